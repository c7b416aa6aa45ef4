"""What every run of ``bench compare`` shares: the workload shapes, a fresh
database per run, the measurement window (CPU and memory) and per-1,000-step
figures."""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench import workflows
from bench.common import Window
from bench.procstat import CpuMeter
from worker import App, Worker
from worker.plugins.workflow import Workflow


@dataclass(frozen=True)
class Shape:
    kind: str  # noop | diamond | chain | fan
    count: int
    size: int = 0  # chain length, fan-out width

    @property
    def label(self) -> str:
        return {
            "noop": f"{self.count:,} no-op jobs",
            "diamond": f"diamond x{self.count:,}",
            "chain": f"chain of {self.size} x{self.count:,}",
            "fan": f"fan-out 1-{self.size:,}-1 x{self.count:,}",
        }[self.kind]

    def builder(self) -> Callable[[int], Workflow]:
        """pgdag's workflows of this shape, made of steps that say when they ran."""
        if self.kind == "diamond":
            return lambda i: workflows.diamond(i, workflows.stamp)
        if self.kind == "chain":
            return lambda i: workflows.chain(i, self.size, workflows.stamp)
        return lambda i: workflows.fan(i, self.size, workflows.stamp)

    def scaled(self, factor: float) -> Shape:
        return replace(self, count=max(1, round(self.count * factor)))


class RunError(Exception):
    pass


@asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A new empty database on the server: (its DSN, its name); dropped afterwards.

    A CHECKPOINT first, so that every run, pgdag's or chancy's, starts with no
    dirty buffers left by the run before it: without it, pgdag's runs that came
    right after a chancy run were 20-30 % slower than the same runs back to back
    (the server writing out the previous run's pages meanwhile). Skipped where
    the bench's role may not checkpoint."""
    name = f"pgdag_bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CHECKPOINT")
    try:
        yield make_conninfo(admin_dsn, dbname=name), name
    finally:
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def meter_window(postmaster: int | None, database: str, into: dict[str, Any]) -> Window:
    """A measurement window for a pgdag run: CPU of this process and its worker
    processes, of PostgreSQL for ``database``; peak RSS of the worker processes."""

    @asynccontextmanager
    async def window(app: App, pool: Worker) -> AsyncIterator[None]:
        meter = CpuMeter(
            os.getpid(), postmaster=postmaster, database=database, rss_pids=lambda: pool.pids
        )
        meter.start()
        try:
            yield
        finally:
            into.update(meter.stop())

    return window


def per_1k(resources: dict[str, Any], steps: int) -> dict[str, Any]:
    out = dict(resources)
    for key in ("pool_cpu_s", "postgres_cpu_s"):
        value = resources.get(key)
        out[f"{key}_per_1k"] = value / steps * 1000 if value is not None and steps else None
    return out


async def measured_workflows(
    admin: str,
    shape: Shape,
    args: argparse.Namespace,
    postmaster: int | None,
    *,
    prepare: Callable[[App], Awaitable[Any]] | None = None,
    wrap: Callable[[Window], Window] | None = None,
) -> dict[str, Any]:
    """One pgdag run of ``shape``'s workflows in a fresh database, measured
    (:func:`meter_window`, which ``wrap`` may wrap), with per-1,000-step figures;
    ``prepare`` runs before the push (see :func:`bench.workflows.run_workflows`)."""
    async with fresh_database(admin) as (dsn, database):
        resources: dict[str, Any] = {}
        window = meter_window(postmaster, database, resources)
        result = await workflows.run_workflows(
            dsn,
            shape.builder(),
            shape.count,
            processes=args.processes,
            concurrency=args.concurrency,
            prepare=prepare,
            window=wrap(window) if wrap is not None else window,
        )
    result.pop("meta", None)
    return {**result, **per_1k(resources, result["steps"])}
