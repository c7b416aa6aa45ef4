"""Plugins: optional parts of an App that run beside the worker pool.

A plugin is passed to ``App(plugins=[...])``. A :class:`Worker` (the
supervisor) starts ``run(worker, app)`` of each plugin whose scope is
``PluginScope.WORKER`` as a task and cancels it when the pool stops.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.app import App


class PluginScope(enum.Enum):
    WORKER = "worker"  # runs inside the worker pool's supervisor
    API = "api"  # contributes routes to the HTTP API


class Plugin:
    """Base class: every hook has a sensible no-op default."""

    @classmethod
    def get_scope(cls) -> PluginScope:
        """When and where the plugin runs; by default inside the worker pool."""
        return PluginScope.WORKER

    def api_plugin(self) -> str | None:
        """Import string of the plugin's API component, if it has one."""
        return None

    def migrate_key(self) -> str | None:
        """Key under which the plugin's migrations are recorded, if any."""
        return None

    def migrate_package(self) -> str | None:
        """Package holding the plugin's migration scripts, if any."""
        return None

    async def run(self, worker: Any, app: App) -> None:
        """Runs while the pool runs (cancelled when it stops)."""
        return None

    async def cleanup(self, app: App) -> int | None:
        """Remove what is no longer needed; returns rows removed, or None."""
        return None
