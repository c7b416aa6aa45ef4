"""Pruner: while this pool is the leader (see :class:`Leadership`), call
``cleanup(app)`` of every other plugin every ``interval`` seconds."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from worker.plugin import Plugin
from worker.plugins.leadership import Leadership

if TYPE_CHECKING:
    from worker.app import App

log = logging.getLogger("pgdag.pruner")


class Pruner(Plugin):
    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval

    async def run(self, worker: Any, app: App) -> None:
        leadership = next((p for p in app.plugins if isinstance(p, Leadership)), None)
        if leadership is None:
            log.warning("Pruner needs the Leadership plugin to know when to run; not pruning")
            return
        while True:
            await asyncio.sleep(self.interval)
            if leadership.is_leader:
                await self.prune(app)

    async def prune(self, app: App) -> int:
        """One pass over every plugin's cleanup; returns the rows removed."""
        removed = 0
        for plugin in app.plugins:
            if plugin is self:
                continue
            count = await plugin.cleanup(app)
            if count:
                log.info("%s removed %d row(s)", type(plugin).__name__, count)
                removed += count
        return removed
