"""Running one claimed job and turning what happened into an outcome.

Async jobs run as tasks on the child's event loop (cancelled on timeout or
cancel); sync jobs run in the child's thread pool. A thread cannot be stopped,
so a sync job past its timeout (or cancelled) makes the child replace itself
(see :mod:`worker.pool.child`). Everything a job raises, ``SystemExit`` and
``KeyboardInterrupt`` included, becomes a failed attempt with its traceback.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from worker.job import CurrentJob, _current_job
from worker.pool.resolve import JobFunctionNotFound, resolve
from worker.queries import Claimed

Outcome = dict[str, Any]


def error_info(exc: BaseException) -> dict[str, str]:
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def outcome(job: Claimed, kind: str, **extra: Any) -> Outcome:
    return {"id": job.id, "claims": job.claims, "outcome": kind, **extra}


@dataclass
class Running:
    job: Claimed
    sync: bool
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.monotonic)
    thread_started: float | None = None  # sync jobs: when the thread picked it up
    interrupt: str | None = None  # "cancelled" | "released" once we decided to stop it


class Executor:
    """Starts jobs and reports each one's outcome to ``report`` exactly once."""

    def __init__(
        self,
        concurrency: int,
        report: Callable[[Running, Outcome], None],
        on_sync_overrun: Callable[[Running, str], None],
    ) -> None:
        self.running: dict[str, Running] = {}
        self._report = report
        self._on_sync_overrun = on_sync_overrun
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="pgdag-job")
        self._loop = asyncio.get_running_loop()

    def start(self, job: Claimed) -> None:
        try:
            func = resolve(job.func)
        except JobFunctionNotFound as exc:
            running = Running(job, sync=False)
            self.running[job.id] = running
            self._finish(running, outcome(job, "failed", error=error_info(exc)))
            return
        sync = not inspect.iscoroutinefunction(func)
        running = Running(job, sync=sync)
        self.running[job.id] = running
        body = self._run_sync(running, func) if sync else self._run_async(running, func)
        running.task = self._loop.create_task(body, name=f"pgdag-job-{job.id}")

    def _finish(self, running: Running, result: Outcome) -> None:
        if self.running.pop(running.job.id, None) is not None:
            self._report(running, result)

    async def _run_async(self, running: Running, func: Callable[..., Any]) -> None:
        job = running.job
        _current_job.set(_info(job))
        deadline: asyncio.Timeout | None = None
        try:
            if job.timeout is None:  # no Timeout object per job (4 % of a worker's time)
                value = await func(**job.kwargs)
            else:
                async with asyncio.timeout(job.timeout) as deadline:
                    value = await func(**job.kwargs)
        except asyncio.CancelledError:
            kind = running.interrupt or "released"
            self._finish(running, outcome(job, kind))
        except TimeoutError as exc:
            if deadline is not None and deadline.expired():
                self._finish(running, _timed_out(job))
            else:
                self._finish(running, outcome(job, "failed", error=error_info(exc)))
        except BaseException as exc:  # noqa: BLE001 - a job's SystemExit must not stop the pool
            self._finish(running, outcome(job, "failed", error=error_info(exc)))
        else:
            self._finish(running, outcome(job, "succeeded", result=value))

    async def _run_sync(self, running: Running, func: Callable[..., Any]) -> None:
        job = running.job
        context = contextvars.copy_context()
        context.run(_current_job.set, _info(job))
        timer: asyncio.TimerHandle | None = None

        def started() -> None:
            nonlocal timer
            running.thread_started = time.monotonic()
            if job.timeout is not None and job.id in self.running:
                timer = self._loop.call_later(job.timeout, self._sync_timed_out, running)

        def call() -> tuple[str, Any]:
            self._loop.call_soon_threadsafe(started)
            try:
                return "succeeded", func(**job.kwargs)
            except BaseException as exc:  # noqa: BLE001 - see _run_async
                return "failed", exc

        try:
            kind, value = await asyncio.shield(
                self._loop.run_in_executor(self._threads, context.run, call)
            )
        except asyncio.CancelledError:
            # we are shutting down or replacing the process; the thread runs on
            self._finish(running, outcome(job, running.interrupt or "released"))
            return
        finally:
            if timer is not None:
                timer.cancel()
        if kind == "failed":
            self._finish(running, outcome(job, "failed", error=error_info(value)))
        else:
            self._finish(running, outcome(job, "succeeded", result=value))

    def _sync_timed_out(self, running: Running) -> None:
        if running.job.id in self.running:
            self._finish(running, _timed_out(running.job))
            self._on_sync_overrun(running, "timeout")

    def interrupt(self, job_id: str, kind: str) -> None:
        """Stop a running job: ``cancelled`` (a user cancelled it) or
        ``released`` (shutdown: it goes back to pending)."""
        running = self.running.get(job_id)
        if running is None:
            return
        running.interrupt = kind
        if running.sync:
            if kind == "cancelled":
                self._finish(running, outcome(running.job, "cancelled"))
                self._on_sync_overrun(running, "cancelled")
            elif running.task is not None:
                running.task.cancel()
        elif running.task is not None:
            running.task.cancel()

    async def release_all(self) -> None:
        """Give every running job back (outcome ``released``): async ones are
        cancelled and awaited; sync ones are reported at once, their threads
        are abandoned with the process."""
        tasks = []
        for running in list(self.running.values()):
            running.interrupt = running.interrupt or "released"
            if running.sync:
                self._finish(running, outcome(running.job, running.interrupt))
            if running.task is not None:
                running.task.cancel()
                tasks.append(running.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    def shutdown(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def _timed_out(job: Claimed) -> Outcome:
    message = f"job {job.func} timed out after {job.timeout:g}s"
    return outcome(job, "timeout", error={"type": "TimeoutError", "message": message})


def _info(job: Claimed) -> CurrentJob:
    return CurrentJob(job.id, job.func, job.attempts, job.max_attempts)
