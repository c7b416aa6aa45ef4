"""Job functions for the workflow tests (imported by spawned worker processes)."""

from __future__ import annotations

from worker import current_job, job


@job()
async def ok(tag: str = "") -> str:
    return tag or "ok"


@job()
def sync_ok() -> str:
    return "sync"


@job()
async def boom() -> None:
    raise RuntimeError("step failed on purpose")


@job(max_attempts=3)
async def flaky_twice() -> int:
    running = current_job()
    assert running is not None
    if running.attempt < 3:
        raise RuntimeError(f"attempt {running.attempt} fails")
    return running.attempt
