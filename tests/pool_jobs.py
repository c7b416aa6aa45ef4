"""Job functions run by the worker processes of ``test_pool.py``.

Worker processes are spawned and import these by path (``pool_jobs.<name>``):
pytest puts ``tests/`` on ``sys.path`` and spawned processes inherit it.

Jobs that must be observed from the test record each execution in the table
``public.executions(tag, pid, at)`` of the test's database (``dsn``), so a test
knows that a job is running, in which process, and how many times it ran.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import psycopg

from worker import job

log = logging.getLogger("pool_jobs")

if os.environ.get("POOL_JOBS_REFUSE_IMPORT"):  # a worker process that cannot start
    raise ImportError("pool_jobs refuses to be imported: $POOL_JOBS_REFUSE_IMPORT is set")

_INSERT = "INSERT INTO public.executions (tag, pid) VALUES (%s, %s)"
_COUNT = "SELECT count(*) FROM public.executions WHERE tag = %s"


def record(dsn: str, tag: str) -> int:
    """Record one execution of ``tag``; returns how many there were, this one included."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_INSERT, (tag, os.getpid()))
        row = conn.execute(_COUNT, (tag,)).fetchone()
    assert row is not None
    return int(row[0])


async def arecord(dsn: str, tag: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(_INSERT, (tag, os.getpid()))
        cur = await conn.execute(_COUNT, (tag,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


# -- plain work ------------------------------------------------------------------


@job()
async def echo(n: int) -> int:
    return n


@job()
def sleepy(dsn: str, tag: str, first: float, later: float = 0.0) -> int:
    """Sync: sleeps ``first`` seconds on its first execution, ``later`` afterwards."""
    count = record(dsn, tag)
    time.sleep(first if count == 1 else later)
    return count


@job()
async def asleepy(dsn: str, tag: str, first: float, later: float = 0.0) -> int:
    """Async :func:`sleepy`."""
    count = await arecord(dsn, tag)
    await asyncio.sleep(first if count == 1 else later)
    return count


def has_run(dsn: str, tag: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(_COUNT, (tag,)).fetchone()
    return bool(row and row[0])


@job()
def waits_for(dsn: str, tag: str, signal: str, limit: float = 60.0) -> int:
    """Sync: runs until an execution of ``signal`` is recorded (the test records
    one to let it finish) or ``limit`` seconds pass."""
    count = record(dsn, tag)
    deadline = time.monotonic() + limit
    while not has_run(dsn, signal) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


@job()
async def awaits_for(dsn: str, tag: str, signal: str, limit: float = 60.0) -> int:
    """Async :func:`waits_for`."""
    count = await arecord(dsn, tag)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await asyncio.to_thread(has_run, dsn, signal):
            break
        await asyncio.sleep(0.05)
    return count


@job()
def flaky(dsn: str, tag: str, failures: int) -> int:
    """Raises on its first ``failures`` executions, then succeeds."""
    count = record(dsn, tag)
    if count <= failures:
        raise ValueError(f"flaky failure number {count}")
    return count


# -- bad behaviour ------------------------------------------------------------------


@job()
def returns_set() -> Any:
    return {1, 2}


@job()
async def returns_object() -> Any:
    return object()


@job()
def returns_nul() -> str:
    """JSON can encode it, but a PostgreSQL jsonb value cannot hold U+0000."""
    return "before\x00after"


@job()
def raises_nul() -> None:
    raise ValueError("a message with a NUL \x00 in it")


@job()
def raises_system_exit() -> None:
    raise SystemExit(4)


@job()
async def araises_system_exit() -> None:
    raise SystemExit(5)


@job()
def raises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@job()
async def araises_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@job()
def exits_process(dsn: str, tag: str) -> None:
    record(dsn, tag)
    os._exit(3)


# -- logging ------------------------------------------------------------------------


@job()
def logs(message: str) -> int:
    log.warning("sync %s", message)
    try:
        raise RuntimeError("logged with its traceback")
    except RuntimeError:
        log.exception("sync failure %s", message)
    return os.getpid()


@job()
async def alogs(message: str) -> int:
    log.warning("async %s", message)
    return os.getpid()


@job()
def chatty(dsn: str, tag: str, seconds: float = 60.0) -> None:
    """Logs as fast as it can (until killed or ``seconds`` pass)."""
    record(dsn, tag)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        log.warning("chatter %d", n)
