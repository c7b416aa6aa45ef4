"""LISTEN on a dedicated connection and turn notifications into callbacks.

Channels are ``<schema>.<what>``: ``jobs`` (payload: a queue with new due jobs),
``cancel`` (payload: a job id), ``done`` (some jobs changed state; no payload).
Notifications are hints, never the only path: every consumer also polls at a
slow interval, so a notification lost while reconnecting only costs latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import psycopg
from psycopg import sql

log = logging.getLogger("pgdag.listener")

Callback = Callable[[str, str], None]  # (what, payload)


def channel(schema: str, what: str) -> str:
    return f"{schema}.{what}"


class Listener:
    """Listens on ``<schema>.<what>`` for each of ``whats`` and calls ``callback``
    with ``(what, payload)`` on the event loop. Reconnects after errors, calling
    ``callback(what, "")`` for every channel after a reconnect (anything may
    have been missed)."""

    def __init__(self, dsn: str, schema: str, whats: Iterable[str], callback: Callback) -> None:
        self._dsn = dsn
        self._schema = schema
        self._whats = list(whats)
        self._callback = callback
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pgdag-listener")
        # wait for LISTEN to be in place, so nothing pushed after start() is missed
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        by_channel = {channel(self._schema, w): w for w in self._whats}
        delay = 0.1
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True
                ) as conn:
                    for name in by_channel:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                    self.ready.set()
                    if not first:
                        for what in self._whats:
                            self._callback(what, "")
                    first, delay = False, 0.1
                    async for note in conn.notifies():
                        what = by_channel.get(note.channel)
                        if what is not None:
                            self._callback(what, note.payload)
            except psycopg.OperationalError as exc:
                if first:
                    raise
                log.warning("listener connection lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
