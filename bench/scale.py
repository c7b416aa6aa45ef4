"""pgdag at scale for ``bench compare``: diamonds with many idle *running*
workflows present, and one workflow of 10,000 steps."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bench import workflows
from bench.common import Window
from bench.runs import RunError, Shape, measured_workflows
from worker import App, Worker
from worker.plugins.workflow import Workflow, WorkflowPlugin


async def warm_up(app: App, count: int) -> None:
    """Run ``count`` diamonds to completion on the pool before anything is measured.

    Without it the 0-idle run was the only one measured on a cold pool: the
    others had just run their idle workflows' first steps, so their worker
    processes and PostgreSQL backends came with cached plans and warm caches,
    and they came out 17-27 % *faster* than with none present."""
    async with app.connection() as conn:
        since = await app.queries.server_now(conn)
    await WorkflowPlugin.push_many(app, [workflows.diamond(i) for i in range(count)])
    await workflows.wait_all(app, count, since)


def idle_workflows(count: int, warm: int, info: dict[str, Any]) -> Callable[[App], Awaitable[None]]:
    """``prepare`` for run_workflows: ``warm`` diamonds run to completion (as
    many as are measured, in every scale run), then ``count`` running workflows
    that wait a year."""

    async def prepare(app: App) -> None:
        await warm_up(app, warm)
        started = time.perf_counter()
        later = workflows.step.job.with_scheduled_at(datetime.now(UTC) + timedelta(days=365))
        for first in range(0, count, 10_000):
            await WorkflowPlugin.push_many(
                app,
                [
                    Workflow(f"idle-{i}")
                    .add("start", workflows.step)
                    .add("later", later, ["start"])
                    for i in range(first, min(count, first + 10_000))
                ],
            )
        s = sql.Identifier(app.schema)
        waiting = sql.SQL("SELECT count(*) FROM {}.jobs WHERE step_id = 'later'").format(s)
        deadline = time.monotonic() + 900
        async with app.connection() as conn:
            while True:
                row = await (await conn.execute(waiting)).fetchone()
                if row is not None and row[0] >= count:
                    break
                if time.monotonic() > deadline:
                    raise RunError(f"only {row[0] if row else 0} of {count} idle workflows ready")
                await asyncio.sleep(0.25)
            for table in ("jobs", "workflows", "workflow_steps", "workflow_events"):
                await conn.execute(
                    sql.SQL("VACUUM (ANALYZE) {}.{}").format(s, sql.Identifier(table))
                )
            try:  # write out what building them dirtied, not during the measurement
                await conn.execute("CHECKPOINT")
                info["checkpoint"] = True
            except psycopg.errors.InsufficientPrivilege:
                info["checkpoint"] = False
        info["idle_build_seconds"] = time.perf_counter() - started

    return prepare


def idle_window(base: Window, count: int, info: dict[str, Any]) -> Window:
    """``base``, then check that the idle workflows are still running, idle."""

    @asynccontextmanager
    async def window(app: App, pool: Worker) -> AsyncIterator[None]:
        async with base(app, pool):
            yield
        query = sql.SQL(
            "SELECT count(*) FROM {}.workflows WHERE state = 'running' AND name LIKE 'idle-%%'"
        ).format(sql.Identifier(app.schema))
        async with app.connection() as conn:
            row = await (await conn.execute(query)).fetchone()
        info["idle_running_after"] = row[0] if row else 0
        if info["idle_running_after"] != count:
            raise RunError(f"{info['idle_running_after']} of {count} idle workflows running")

    return window


async def scale_run(
    admin: str, idle: int, diamonds: int, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    info: dict[str, Any] = {"idle_build_seconds": 0.0}
    result = await measured_workflows(
        admin,
        Shape("diamond", diamonds),
        args,
        postmaster,
        prepare=idle_workflows(idle, diamonds, info),
        wrap=lambda window: idle_window(window, idle, info),
    )
    return {**result, **info}


async def big_run(
    admin: str, width: int, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    return await measured_workflows(admin, Shape("fan", 1, width), args, postmaster)
