"""Helpers of the worker-pool tests (``test_pool*.py``).

Jobs that a test must observe (see ``pool_jobs``) record each execution, with
the pid of the process that ran it, in ``public.executions`` of the test's
database, so a test knows when a job runs, where, and how often.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from worker import App, Worker

WAIT = 30.0  # generous: a loaded 2-core machine runs these tests


def create_executions(dsn: str) -> str:
    """An empty ``public.executions`` table in the database; returns ``dsn``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS public.executions ("
            " tag text NOT NULL, pid integer NOT NULL,"
            " at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        conn.execute("TRUNCATE public.executions")
    return dsn


async def pids_of(app: App, tag: str) -> list[int]:
    """Pids of the processes that ran ``tag``, in order of execution."""
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT pid FROM public.executions WHERE tag = %s ORDER BY at", (tag,)
        )
        return [row[0] for row in await cur.fetchall()]


async def row(app: App, job_id: str) -> dict[str, Any]:
    """The job's row as stored (with ``claims``, which QueuedJob leaves out)."""
    async with app.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM pgdag.jobs WHERE id = %s", (job_id,))
        found = await cur.fetchone()
    assert found is not None
    return found


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = WAIT
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_running(app: App, *tags: str) -> None:
    """Until every job of ``tags`` has started (recorded an execution)."""

    async def started() -> bool:
        return all([await pids_of(app, tag) for tag in tags])

    await wait_until(started, f"jobs {tags} to start")


async def wait_replaced(pool: Worker, old: list[int]) -> list[int]:
    """Until the pool's processes are not ``old`` any more; returns the new pids."""
    await wait_until(
        lambda: len(pool.pids) == len(old) and pool.pids != old, "a replacement process"
    )
    return pool.pids


class Collect(logging.Handler):
    """Keeps every record it sees (attach it to a logger, remove it after)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
