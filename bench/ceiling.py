"""The bare SQL ceiling: what PostgreSQL itself allows for a step of a queue.

A step is claimed, completed, and its successor enqueued, with the least SQL a
PostgreSQL job queue can do it with: plain tables in a scratch schema, no
functions, no JSON, batches of ``batch`` rows, ``connections`` connections
working at once (like a pool's processes). Each connection loops over two
autocommit statements (two transactions, as a real queue needs: the claim must
commit before the job runs):

1. claim: ``UPDATE ... FROM (SELECT ... ORDER BY priority, scheduled_at, id
   LIMIT batch FOR UPDATE SKIP LOCKED) ... RETURNING id``;
2. complete and enqueue: ``WITH done AS (UPDATE ... SET state = 'succeeded'
   ... RETURNING chain, pos) INSERT INTO jobs ... SELECT`` the next step of each
   chain.

The work is ``chains`` chains of ``length`` steps, so that there are always
steps to claim while successors appear. Reported: steps/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

_SETUP = """
CREATE SCHEMA {s};
CREATE TABLE {s}.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    priority integer NOT NULL DEFAULT 0,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    chain integer NOT NULL,
    pos integer NOT NULL,
    started_at timestamptz,
    completed_at timestamptz
) WITH (fillfactor = 80);
CREATE INDEX jobs_claimable ON {s}.jobs (queue, priority DESC, scheduled_at, id)
    WHERE state = 'pending';
"""

_SEED = "INSERT INTO {s}.jobs (queue, chain, pos) SELECT 'q', c, 0 FROM generate_series(1, %s) c"

_CLAIM = """
UPDATE {s}.jobs AS j SET state = 'running', started_at = now()
FROM (
    SELECT id FROM {s}.jobs
    WHERE state = 'pending' AND queue = 'q' AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE j.id = picked.id
RETURNING j.id
"""

_COMPLETE = """
WITH done AS (
    UPDATE {s}.jobs SET state = 'succeeded', completed_at = now()
    WHERE id = ANY (%s) AND state = 'running'
    RETURNING chain, pos
)
INSERT INTO {s}.jobs (queue, chain, pos)
SELECT 'q', chain, pos + 1 FROM done WHERE pos + 1 < %s
"""


async def _loop(
    dsn: str, schema: sql.Identifier, batch: int, length: int, total: int, done: list[int]
) -> None:
    claim = sql.SQL(_CLAIM).format(s=schema)
    complete = sql.SQL(_COMPLETE).format(s=schema)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while done[0] < total:
            cur = await conn.execute(claim, (batch,))
            ids = [row[0] for row in await cur.fetchall()]
            if not ids:
                await asyncio.sleep(0.001)  # successors are being inserted elsewhere
                continue
            await conn.execute(complete, (ids, length))
            done[0] += len(ids)


async def measure(
    dsn: str, *, chains: int = 2000, length: int = 10, batch: int = 100, connections: int = 4
) -> dict[str, Any]:
    """Steps/s of the bare claim + complete + enqueue-successor loop (see the module
    docstring) in a scratch schema of the database ``dsn`` names, dropped afterwards."""
    name = f"ceiling_{uuid.uuid4().hex[:10]}"
    schema = sql.Identifier(name)
    total = chains * length
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(sql.SQL(_SETUP).format(s=schema))
        try:
            await admin.execute(sql.SQL(_SEED).format(s=schema), (chains,))
            await admin.execute(sql.SQL("ANALYZE {}.jobs").format(schema))
            done = [0]
            started = time.perf_counter()
            await asyncio.gather(
                *(_loop(dsn, schema, batch, length, total, done) for _ in range(connections))
            )
            seconds = time.perf_counter() - started
        finally:
            await admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
    return {
        "steps": total,
        "seconds": seconds,
        "steps_per_s": total / seconds,
        "batch": batch,
        "connections": connections,
    }
