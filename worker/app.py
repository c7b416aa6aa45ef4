"""The application object: where PostgreSQL is, which schema, which plugins,
and the helpers to push, inspect, wait for and cancel jobs.

Every helper is a coroutine; ``sync_<name>`` runs it from synchronous code
(see :mod:`worker.sync`): ``with App(dsn) as app: app.sync_push(job)``.
"""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from worker.embedded import resolve_dsn
from worker.errors import ConfigurationError, InvalidJobError, JobNotFoundError
from worker.job import IsAJob, Job, JobState, QueuedJob, as_job, dump_json, uuid7
from worker.migrate import MigrationReport, migrate, validate_schema_name
from worker.queries import Queries
from worker.sync import Portal, run_blocking
from worker.waiters import FINAL_STATES, StatesQuery, Watcher

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


class App:
    """A pgdag application.

    ``dsn`` names the PostgreSQL server; without it, ``$PGDAG_DSN`` or else the
    embedded server is used. Every table and function lives in ``schema``, so
    two applications (or two test runs) share a database without colliding.
    Use it as an async (or plain) context manager to open its connection pool::

        async with App(dsn) as app:
            job_id = await app.push(my_job.job.with_kwargs(x=1))
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "pgdag",
        plugins: Sequence[Any] | None = None,
        min_connections: int = 1,
        max_connections: int = 10,
    ) -> None:
        validate_schema_name(schema)
        if min_connections < 0 or max_connections < max(1, min_connections):
            raise ConfigurationError(
                f"connection pool bounds {min_connections}..{max_connections} are not usable"
            )
        self.schema = schema
        self.plugins = list(plugins or [])
        self.queries = Queries(schema)
        self._dsn = dsn
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._portal: Portal | None = None
        self._watchers: dict[str, Watcher] = {}

    @property
    def dsn(self) -> str:
        """The resolved DSN (starting the embedded server if that is the one)."""
        if self._dsn is None:
            self._dsn = resolve_dsn(None)
        return self._dsn

    # -- lifecycle ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the connection pool is open (``open()`` was called, ``close()`` not)."""
        return self._pool is not None

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.dsn,
            min_size=self._min_connections,
            max_size=self._max_connections,
            kwargs={"autocommit": True},
            open=False,
            name=f"pgdag[{self.schema}]",
        )
        await pool.open(wait=True)
        self._pool = pool
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        watchers, self._watchers = self._watchers, {}
        for watcher in watchers.values():
            await watcher.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        self._loop = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Self:
        self.sync_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sync_close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection in autocommit mode: from the pool when it is open,
        else a short-lived one of its own."""
        if self._pool is not None:
            async with self._pool.connection() as conn:
                yield conn
            return
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            yield conn

    # -- schema --------------------------------------------------------------

    async def migrate(
        self, *, sql_dir: Path | None = None, plpgsql_dir: Path | None = None
    ) -> MigrationReport:
        """Apply pending migrations and (re)install changed functions.

        Safe to call from many processes at once; a run with nothing to do
        writes nothing. ``sql_dir``/``plpgsql_dir`` replace the packaged
        sources (tests use them).
        """
        async with self.connection() as conn:
            return await migrate(conn, self.schema, sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)

    # -- jobs ------------------------------------------------------------------

    async def push(self, job: Job | IsAJob, *, connection: AnyConnection | None = None) -> str:
        """Store one job; returns its id (for a ``unique_key`` an unfinished job
        already holds, that job's id, and nothing is written)."""
        return (await self.push_many([job], connection=connection))[0]

    async def push_many(
        self, jobs: Iterable[Job | IsAJob], *, connection: AnyConnection | None = None
    ) -> list[str]:
        """Store many jobs in one round trip; returns their ids in order.

        With ``connection``, the jobs are written on it, inside whatever
        transaction the caller has open there (and become visible when it
        commits). A job whose kwargs are not JSON fails the whole call before
        anything is sent.
        """
        ids, payload = _encode_jobs(jobs)
        if not ids:
            return []
        if isinstance(connection, psycopg.Connection):
            duplicates = self.queries.push_blocking(connection, payload)
        elif connection is not None:
            duplicates = await self.queries.push(connection, payload)
        else:
            async with self.connection() as conn:
                duplicates = await self.queries.push(conn, payload)
        for ordinal, existing in duplicates:
            ids[ordinal - 1] = str(existing)
        return ids

    async def get_job(self, job_id: str | UUID) -> QueuedJob | None:
        async with self.connection() as conn:
            rows = await self.queries.jobs(conn, [_uuid(job_id)])
        return _queued(rows[0]) if rows else None

    async def wait_for_job(
        self, job_id: str | UUID, *, timeout: float | None = None, interval: float = 1.0
    ) -> QueuedJob:
        """Wait until the job is succeeded, failed or cancelled and return it.

        Woken by LISTEN/NOTIFY; ``interval`` is only the fallback poll. Raises
        :class:`JobNotFoundError` (a ``KeyError``) for an unknown id and
        ``TimeoutError`` after ``timeout`` seconds.
        """
        key = _uuid(job_id)
        job = await self.get_job(key)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        if job.is_final:
            return job
        watcher = await self.watcher("jobs", self._states, FINAL_STATES, interval)
        async with asyncio.timeout(timeout):
            await watcher.wait(key)
        job = await self.get_job(key)
        if job is None:
            raise JobNotFoundError(f"job {job_id} was deleted while waiting for it")
        return job

    async def cancel_job(self, job_id: str | UUID) -> JobState:
        """Cancel a job: a waiting one at once; a running one is interrupted by
        its worker process (async: cancelled; sync: the process is replaced).
        Returns the state right after the request (``running`` while the worker
        stops it; a finished job keeps its state)."""
        async with self.connection() as conn:
            state = await self.queries.cancel(conn, _uuid(job_id))
        if state is None:
            raise JobNotFoundError(f"no job with id {job_id}")
        return JobState(state)

    async def watcher(
        self, kind: str, states: StatesQuery, final: frozenset[str], interval: float
    ) -> Watcher:
        """The App's watcher of ``kind`` (jobs, workflows), started on first use:
        one LISTEN connection and one state query per notification, shared by
        every waiter of that kind."""
        if kind not in self._watchers:
            watcher = Watcher(self.dsn, self.schema, states, interval, final)
            await watcher.start()
            if kind in self._watchers:  # another waiter started one meanwhile
                await watcher.stop()
            else:
                self._watchers[kind] = watcher
        return self._watchers[kind]

    async def _states(self, ids: list[UUID]) -> dict[UUID, str]:
        async with self.connection() as conn:
            return await self.queries.states(conn, ids)

    # -- synchronous counterparts ---------------------------------------------

    def _blocking(self, coro: Any) -> Any:
        if self._loop is None:
            if self._portal is None:
                self._portal = Portal()
            run_blocking(self.open(), self._portal.loop)
            # opened implicitly by a sync_* call: closed at exit if the caller does
            # not (its pool's tasks would otherwise die noisily with the interpreter)
            atexit.register(self.sync_close)
        assert self._loop is not None
        return run_blocking(coro, self._loop)

    def sync_open(self) -> None:
        self._blocking(asyncio.sleep(0))

    def sync_close(self) -> None:
        atexit.unregister(self.sync_close)
        if self._loop is not None:
            run_blocking(self.close(), self._loop)
        if self._portal is not None:
            portal, self._portal = self._portal, None
            portal.close()

    def sync_migrate(self, **kwargs: Any) -> MigrationReport:
        return self._blocking(self.migrate(**kwargs))

    def sync_push(self, job: Job | IsAJob, *, connection: psycopg.Connection | None = None) -> str:
        return self._blocking(self.push(job, connection=connection))

    def sync_push_many(
        self, jobs: Iterable[Job | IsAJob], *, connection: psycopg.Connection | None = None
    ) -> list[str]:
        return self._blocking(self.push_many(list(jobs), connection=connection))

    def sync_get_job(self, job_id: str | UUID) -> QueuedJob | None:
        return self._blocking(self.get_job(job_id))

    def sync_wait_for_job(
        self, job_id: str | UUID, *, timeout: float | None = None, interval: float = 1.0
    ) -> QueuedJob:
        return self._blocking(self.wait_for_job(job_id, timeout=timeout, interval=interval))

    def sync_cancel_job(self, job_id: str | UUID) -> JobState:
        return self._blocking(self.cancel_job(job_id))


def _uuid(value: str | UUID) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise JobNotFoundError(f"{value!r} is not a job id (a UUID)") from exc


def _encode_jobs(jobs: Iterable[Job | IsAJob]) -> tuple[list[str], str]:
    """Ids and the JSON payload of push_jobs: each job as Job.pack() gives it."""
    packed = [as_job(item).pack() for item in jobs]
    ids = [uuid7() for _ in packed]
    rows = [{"id": job_id, **job} for job_id, job in zip(ids, packed, strict=True)]
    try:
        payload = dump_json(rows, "jobs")
    except InvalidJobError:
        for row in rows:  # name the culprit
            dump_json(row.get("kwargs", {}), f"kwargs of job {row['func']}")
            dump_json(row.get("meta", {}), f"meta of job {row['func']}")
        raise
    return ids, payload


def _queued(row: dict[str, Any]) -> QueuedJob:
    """A row of ``Queries.get_jobs`` (its columns are QueuedJob's fields)."""
    return QueuedJob(**{**row, "id": str(row["id"]), "state": JobState(row["state"])})
