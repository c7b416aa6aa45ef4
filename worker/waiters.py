"""Waiting for jobs (or workflows) to finish, woken by LISTEN/NOTIFY on ``<schema>.done``.

One watcher per App and kind of thing: waiters register ids; each notification (or, as a
fallback, each ``interval``) triggers one query for the states of every waited
job, and the waiters whose job reached a final state are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

import psycopg

from worker.listener import Listener

log = logging.getLogger("pgdag.waiters")

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})

StatesQuery = Callable[[list[UUID]], Awaitable[dict[UUID, str]]]


class Watcher:
    def __init__(
        self,
        dsn: str,
        schema: str,
        states: StatesQuery,
        interval: float = 1.0,
        final: frozenset[str] = FINAL_STATES,
    ) -> None:
        self._states = states
        self._final = final
        self._interval = interval
        self._waiting: dict[UUID, list[asyncio.Future[str]]] = {}
        self._wake = asyncio.Event()
        self._listener = Listener(dsn, schema, ["done"], lambda _what, _payload: self._wake.set())
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._listener.start()
        self._task = asyncio.create_task(self._run(), name="pgdag-job-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._listener.stop()
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting.clear()

    async def wait(self, job_id: UUID) -> str:
        """Until the job is final; returns its state ('' if the job vanished)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, []).append(future)
        self._wake.set()  # check at once: it may have finished before we registered
        try:
            return await future
        finally:
            futures = self._waiting.get(job_id)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[job_id]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if not self._waiting:
                continue
            ids = list(self._waiting)
            try:
                states = await self._states(ids)
            except psycopg.Error as exc:
                log.warning("checking waited jobs failed (%s); retrying", exc)
                continue
            for job_id in ids:
                state = states.get(job_id, "")
                if state and state not in self._final:
                    continue
                for future in self._waiting.pop(job_id, []):
                    if not future.done():
                        future.set_result(state)
