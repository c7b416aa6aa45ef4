"""Leadership: at most one worker pool at a time is the leader, for singleton
chores (pruning). Workflows do not need a leader.

The leader holds a session-level advisory lock on a connection of its own.
When its process dies, PostgreSQL closes the connection and releases the lock
at once, and the next pool to try (every ``poll_interval`` seconds) takes over:
no minute-long elections, no lease to wait out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import psycopg

from worker.plugin import Plugin

if TYPE_CHECKING:
    from worker.app import App

log = logging.getLogger("pgdag.leadership")

_LOCK_CLASS = 0x70676C64  # "pgld"; the second key is hashtext(schema)


class Leadership(Plugin):
    def __init__(self, poll_interval: float = 1.0) -> None:
        self.poll_interval = poll_interval
        self.is_leader = False
        self.changed = asyncio.Event()

    async def run(self, worker: Any, app: App) -> None:
        try:
            while True:
                try:
                    await self._hold(app)
                except psycopg.OperationalError as exc:
                    log.warning("leadership connection lost (%s)", exc)
                self._set(False)
                await asyncio.sleep(self.poll_interval)
        finally:
            self._set(False)

    async def _hold(self, app: App) -> None:
        async with await psycopg.AsyncConnection.connect(app.dsn, autocommit=True) as conn:
            while True:
                if self.is_leader:
                    # the lock lives as long as this connection: keep checking it
                    await conn.execute("SELECT 1")
                else:
                    cur = await conn.execute(
                        "SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS, app.schema)
                    )
                    row = await cur.fetchone()
                    self._set(bool(row and row[0]))
                await asyncio.sleep(self.poll_interval)

    def _set(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            log.info("this pool is %s the leader", "now" if leader else "no longer")
            self.changed.set()
            self.changed = asyncio.Event()
