"""Calling ``advance_workflows`` until nothing is due.

Used by worker processes when notified on ``<schema>.workflows`` (a completion
found its workflow locked by another process and left the finished steps in
``workflow_events``), and by ``WorkflowPlugin.run`` as the safety sweep. The
common case never comes here: ``complete_jobs`` advances the workflows of the
steps it finishes in its own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from worker.queries import Queries

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection[Any]]]


async def advance_until_idle(
    connect: Connect, queries: Queries, limit: int, ids: list[UUID] | None = None
) -> int:
    """Call advance_workflows again at once while a call used its whole batch,
    and shortly while due workflows are locked by another caller (which may
    have committed without seeing our events). Returns the jobs created."""
    enqueued = 0
    for attempt in range(30):  # about 0.4 s at most; the sweep takes over after that
        async with connect() as conn:
            advanced, skipped, created = await queries.advance_workflows(conn, limit, ids)
        enqueued += created
        if advanced >= limit:
            continue
        if not skipped:
            break
        await asyncio.sleep(min(0.001 * (attempt + 1), 0.02))
    return enqueued
