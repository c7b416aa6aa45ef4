"""The application object: where PostgreSQL is, which schema, which plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg_pool import AsyncConnectionPool

from worker.embedded import resolve_dsn
from worker.errors import ConfigurationError
from worker.migrate import MigrationReport, migrate, validate_schema_name


class App:
    """A pgdag application.

    ``dsn`` names the PostgreSQL server; without it, ``$PGDAG_DSN`` or else the
    embedded server is used. Every table and function lives in ``schema``, so
    two applications (or two test runs) share a database without colliding.
    Use it as an async context manager to open its connection pool::

        async with App(dsn) as app:
            await app.migrate()
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
        self._dsn = dsn
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._pool: AsyncConnectionPool | None = None

    @property
    def dsn(self) -> str:
        """The resolved DSN (starting the embedded server if that is the one)."""
        if self._dsn is None:
            self._dsn = resolve_dsn(None)
        return self._dsn

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

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

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

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection in autocommit mode: from the pool when it is open,
        else a short-lived one of its own."""
        if self._pool is not None:
            async with self._pool.connection() as conn:
                yield conn
            return
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            yield conn

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
