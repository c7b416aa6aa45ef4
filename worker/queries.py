"""The one place runtime code talks SQL: thin calls to the PL/pgSQL API.

Every statement is composed once per schema with :mod:`psycopg.sql`; the
functions they call live in ``plpgsql/`` and say there what they lock and which
state transitions they make.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from psycopg import AsyncConnection, Connection, sql
from psycopg.rows import dict_row


class Claimed(NamedTuple):
    """A job claimed by a worker process. A named tuple, not a frozen dataclass:
    one is built per job on the hot path, and a frozen dataclass's __init__ (a
    setattr per field) cost about 5 % of a worker process's busy time."""

    id: str  # the job id, as text: a worker process only ever uses it as a key and in JSON
    claims: int
    func: str
    kwargs: dict[str, Any]
    timeout: float | None
    attempts: int
    max_attempts: int


# A step's row is not written when its job is claimed (claim_jobs spares that write on
# the hot path): while the job runs, the step's state and first start are the job's.
# complete_jobs writes both to the step with the outcome. Readers of steps go through
# STEPS_WITH_JOBS, whose aliases (s: the step, j: its job) the two expressions use.
STEPS_WITH_JOBS = "{s}.workflow_steps AS s LEFT JOIN {s}.jobs AS j ON j.id = s.job_id"
STEP_STATE = "CASE WHEN j.state = 'running' THEN 'running' ELSE s.state END"
STEP_STARTED = "coalesce(s.started_at, j.started_at)"


class Queries:
    def __init__(self, schema: str) -> None:
        s = sql.Identifier(schema)

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=s)

        self.push_jobs = q("SELECT ord, existing_id FROM {s}.push_jobs(%s::jsonb)")
        claimed = "id::text, claims, func, kwargs, timeout_seconds, attempts, max_attempts"
        self.claim_jobs = q(f"SELECT {claimed} FROM {{s}}.claim_jobs(%s, %s, %s, %s)")
        self.complete_and_claim_jobs = q(
            f"SELECT {claimed} FROM {{s}}.complete_and_claim_jobs(%s, %s::jsonb, %s, %s, %s, %s)"
        )
        self.extend_leases = q("SELECT id::text FROM {s}.extend_leases(%s, %s::uuid[], %s)")
        self.recover_jobs = q("SELECT id, state FROM {s}.recover_jobs(%s, %s)")
        self.cancel_job = q("SELECT {s}.cancel_job(%s)")
        self.get_jobs = q(
            "SELECT id, func, kwargs, queue, priority, state, attempts, max_attempts, errors, "
            "result, meta, unique_key, timeout_seconds AS timeout, created_at, scheduled_at, "
            "started_at, completed_at, worker_id, cancel_requested "
            "FROM {s}.jobs WHERE id = ANY(%s)"
        )
        self.job_states = q("SELECT id, state FROM {s}.jobs WHERE id = ANY(%s)")
        self.queue_counts = q(
            "SELECT state, count(*) FROM {s}.jobs WHERE queue = %s AND created_at >= %s "
            "GROUP BY state"
        )
        self.now = q("SELECT now()")
        self.push_workflows_query = q("SELECT {s}.push_workflows(%s::jsonb)")
        self.advance_workflows_query = q(
            "SELECT advanced, skipped, enqueued FROM {s}.advance_workflows(%s, now(), %s)"
        )
        self.fetch_workflows_query = q(
            "SELECT w.id, w.name, w.state, w.created_at, w.updated_at, w.completed_at, "
            "(SELECT coalesce(jsonb_agg(jsonb_build_object("
            "'step_id', s.step_id, 'job', s.job, 'dependencies', s.dependencies, "
            f"'state', {STEP_STATE}, 'job_id', s.job_id, 'started_at', {STEP_STARTED}, "
            "'completed_at', s.completed_at) ORDER BY s.position), '[]') "
            f"FROM {STEPS_WITH_JOBS} WHERE s.workflow_id = w.id) AS steps "
            "FROM {s}.workflows AS w "
            "WHERE (%(states)s::text[] IS NULL OR w.state = ANY(%(states)s)) "
            "AND (%(ids)s::uuid[] IS NULL OR w.id = ANY(%(ids)s)) "
            "ORDER BY w.created_at DESC, w.id DESC LIMIT %(limit)s"
        )
        self.workflow_states_query = q("SELECT id, state FROM {s}.workflows WHERE id = ANY(%s)")
        self.step_timings_query = q(
            f"SELECT s.step_id, {STEP_STARTED}, s.completed_at FROM {STEPS_WITH_JOBS} "
            "WHERE s.workflow_id = %s"
        )
        self.nudge_workflow = q("INSERT INTO {s}.workflow_events (workflow_id) VALUES (%s)")
        self._schema = s
        self.batch_span_query = q(
            "SELECT extract(epoch FROM max(completed_at) - min(created_at)) "
            "FROM {s}.jobs WHERE queue = %s AND created_at >= %s"
        )
        # -- the read side of the HTTP API (worker/api) -----------------------------
        # Pages are newest first and keyset-paginated on (created_at, id): a page
        # starts strictly after the (created_at, id) of the last row of the one before.
        self.api_schema_version = q("SELECT {s}.schema_version()")
        self.api_list_workflows = q(
            "SELECT id, name, state, steps_total, steps_succeeded, created_at, updated_at, "
            "completed_at FROM {s}.workflows "
            "WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s)) "
            "AND (%(name)s::text IS NULL OR name = %(name)s) "
            "AND (%(before_at)s::timestamptz IS NULL "
            "OR (created_at, id) < (%(before_at)s, %(before_id)s::uuid)) "
            "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )
        self.api_workflow = q(
            "SELECT w.id, w.name, w.state, w.steps_total, w.steps_succeeded, w.created_at, "
            "w.updated_at, w.completed_at, "
            "(SELECT coalesce(jsonb_agg(jsonb_build_object("
            "'step_id', s.step_id, 'func', s.job ->> 'func', "
            "'queue', coalesce(j.queue, s.job ->> 'queue', 'default'), "
            f"'dependencies', s.dependencies, 'state', {STEP_STATE}, 'job_id', s.job_id, "
            "'attempts', coalesce(j.attempts, 0), "
            "'max_attempts', coalesce(j.max_attempts, (s.job ->> 'max_attempts')::integer, 1), "
            f"'started_at', {STEP_STARTED}, 'completed_at', s.completed_at, "
            "'errors', coalesce(j.errors, '[]'::jsonb)) ORDER BY s.position), '[]') "
            f"FROM {STEPS_WITH_JOBS} WHERE s.workflow_id = w.id) AS steps "
            "FROM {s}.workflows AS w WHERE w.id = %s"
        )
        self.api_list_jobs = q(
            "SELECT id, func, queue, state, priority, attempts, max_attempts, created_at, "
            "scheduled_at, started_at, completed_at, workflow_id, step_id FROM {s}.jobs "
            "WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s)) "
            "AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s)) "
            "AND (%(before_at)s::timestamptz IS NULL "
            "OR (created_at, id) < (%(before_at)s, %(before_id)s::uuid)) "
            "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
        )
        self.api_job = q(
            "SELECT id, func, queue, state, priority, attempts, max_attempts, kwargs, meta, "
            "result, errors, unique_key, timeout_seconds AS timeout, created_at, scheduled_at, "
            "started_at, completed_at, worker_id, cancel_requested, workflow_id, step_id "
            "FROM {s}.jobs WHERE id = %s"
        )
        self.api_job_counts = q(
            "SELECT queue, state, count(*) AS count FROM {s}.jobs "
            "GROUP BY queue, state ORDER BY queue, state"
        )

    async def push(self, conn: AsyncConnection, payload: str) -> list[tuple[int, UUID]]:
        cur = await conn.execute(self.push_jobs, (payload,))
        return await cur.fetchall()

    def push_blocking(self, conn: Connection, payload: str) -> list[tuple[int, UUID]]:
        """:meth:`push` on a synchronous connection of the caller's."""
        return conn.execute(self.push_jobs, (payload,)).fetchall()

    async def claim(
        self, conn: AsyncConnection, worker: str, queues: list[str], limit: int, lease: float
    ) -> list[Claimed]:
        cur = await conn.execute(self.claim_jobs, (worker, queues, limit, lease))
        return [Claimed(*row) for row in await cur.fetchall()]

    async def complete_and_claim(
        self,
        conn: AsyncConnection,
        worker: str,
        payload: str,
        queues: list[str],
        limit: int,
        lease: float,
        workflow_batch: int = 1000,
    ) -> list[Claimed]:
        """Record a batch of outcomes and claim up to ``limit`` jobs, in one
        transaction (what the completions made ready included)."""
        cur = await conn.execute(
            self.complete_and_claim_jobs, (worker, payload, queues, limit, lease, workflow_batch)
        )
        return [Claimed(*row) for row in await cur.fetchall()]

    async def extend(
        self, conn: AsyncConnection, worker: str, ids: list[str], lease: float
    ) -> list[str]:
        cur = await conn.execute(self.extend_leases, (worker, ids, lease))
        return [row[0] for row in await cur.fetchall() if row[0] is not None]

    async def recover(
        self, conn: AsyncConnection, worker: str | None = None, limit: int = 1000
    ) -> list[tuple[UUID, str]]:
        cur = await conn.execute(self.recover_jobs, (worker, limit))
        return await cur.fetchall()

    async def cancel(self, conn: AsyncConnection, job_id: UUID) -> str | None:
        cur = await conn.execute(self.cancel_job, (job_id,))
        row = await cur.fetchone()
        return row[0] if row else None

    async def jobs(self, conn: AsyncConnection, ids: list[UUID]) -> list[dict[str, Any]]:
        return await _dicts(conn, self.get_jobs, (ids,))

    async def states(self, conn: AsyncConnection, ids: list[UUID]) -> dict[UUID, str]:
        cur = await conn.execute(self.job_states, (ids,))
        return dict(await cur.fetchall())

    async def counts(self, conn: AsyncConnection, queue: str, since: datetime) -> dict[str, int]:
        """Number of jobs of ``queue`` created since ``since``, by state."""
        cur = await conn.execute(self.queue_counts, (queue, since))
        return dict(await cur.fetchall())

    async def server_now(self, conn: AsyncConnection) -> datetime:
        cur = await conn.execute(self.now)
        row = await cur.fetchone()
        assert row is not None
        return row[0]

    async def batch_span(self, conn: AsyncConnection, queue: str, since: datetime) -> float:
        """Seconds from the first creation to the last completion of the jobs
        of ``queue`` created since ``since`` (PostgreSQL's clock; benchmarks)."""
        cur = await conn.execute(self.batch_span_query, (queue, since))
        row = await cur.fetchone()
        assert row is not None and row[0] is not None
        return float(row[0])

    async def push_workflows(self, conn: AsyncConnection, payload: str) -> list[UUID]:
        """Store the workflows of a JSON array; their ids in order."""
        cur = await conn.execute(self.push_workflows_query, (payload,))
        return [row[0] for row in await cur.fetchall()]

    async def advance_workflows(
        self, conn: AsyncConnection, limit: int, ids: list[UUID] | None = None
    ) -> tuple[int, int, int]:
        """(advanced, skipped, enqueued) of one advance_workflows call."""
        cur = await conn.execute(self.advance_workflows_query, (limit, ids))
        row = await cur.fetchone()
        assert row is not None
        return row[0], row[1], row[2]

    async def fetch_workflows(
        self,
        conn: AsyncConnection,
        *,
        states: list[str] | None,
        ids: list[UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        params = {"states": states, "ids": ids, "limit": limit}
        return await _dicts(conn, self.fetch_workflows_query, params)

    async def workflow_states(self, conn: AsyncConnection, ids: list[UUID]) -> dict[UUID, str]:
        cur = await conn.execute(self.workflow_states_query, (ids,))
        return dict(await cur.fetchall())

    async def delete_finished_workflows(
        self, conn: AsyncConnection, rule: sql.Composable, batch: int
    ) -> int:
        """Delete up to ``batch`` completed or failed workflows matching ``rule``,
        with their steps (no foreign key cascades: see sql/0007)."""
        query = sql.SQL(
            "WITH gone AS (DELETE FROM {s}.workflows WHERE id IN (SELECT id FROM {s}.workflows "
            "WHERE state IN ('completed', 'failed') AND {rule} LIMIT {batch}) RETURNING id), "
            "steps AS (DELETE FROM {s}.workflow_steps "
            "WHERE workflow_id IN (SELECT id FROM gone)) "
            "SELECT count(*) FROM gone"
        ).format(s=self._schema, rule=rule, batch=sql.Literal(batch))
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return row[0] if row else 0

    async def step_timings(
        self, conn: AsyncConnection, workflow_id: str
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        cur = await conn.execute(self.step_timings_query, (UUID(workflow_id),))
        return {step: (started, completed) for step, started, completed in await cur.fetchall()}

    # -- the read side of the HTTP API ------------------------------------------------

    async def schema_version(self, conn: AsyncConnection) -> int:
        """The highest migration applied to the schema (raises if it has none)."""
        cur = await conn.execute(self.api_schema_version)
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def list_workflows(
        self,
        conn: AsyncConnection,
        *,
        states: list[str] | None,
        name: str | None,
        before: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Workflows without their steps, newest first, starting after ``before``."""
        params = {"states": states, "name": name, "limit": limit, **_keyset(before)}
        return await _dicts(conn, self.api_list_workflows, params)

    async def workflow(self, conn: AsyncConnection, workflow_id: UUID) -> dict[str, Any] | None:
        """One workflow with its steps (and their jobs' attempts and errors)."""
        return await _dict(conn, self.api_workflow, (workflow_id,))

    async def list_jobs(
        self,
        conn: AsyncConnection,
        *,
        states: list[str] | None,
        queues: list[str] | None,
        before: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Jobs without kwargs, result or errors, newest first, starting after ``before``."""
        params = {"states": states, "queues": queues, "limit": limit, **_keyset(before)}
        return await _dicts(conn, self.api_list_jobs, params)

    async def job(self, conn: AsyncConnection, job_id: UUID) -> dict[str, Any] | None:
        """One job, everything stored about it but its claim and retry settings."""
        return await _dict(conn, self.api_job, (job_id,))

    async def job_counts(self, conn: AsyncConnection) -> list[tuple[str, str, int]]:
        """(queue, state, number of jobs) for every pair that has jobs."""
        cur = await conn.execute(self.api_job_counts)
        return [(queue, state, int(count)) for queue, state, count in await cur.fetchall()]


def _keyset(before: tuple[datetime, UUID] | None) -> dict[str, Any]:
    at, key = before if before is not None else (None, None)
    return {"before_at": at, "before_id": key}


async def _dicts(conn: AsyncConnection, query: sql.Composable, params: Any) -> list[dict[str, Any]]:
    """The rows of ``query`` as dicts (column -> value)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _dict(conn: AsyncConnection, query: sql.Composable, params: Any) -> dict[str, Any] | None:
    """The first row of ``query`` as a dict (column -> value), or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()
