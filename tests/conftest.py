from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import harness
import psycopg
import pytest
from psycopg import sql

from worker import App


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller set the server up
    try:
        server = harness.start()
    except RuntimeError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[_SERVER] = server
    os.environ[harness.ENV_ADMIN] = server.admin_dsn
    os.environ[harness.ENV_TEMPLATE] = server.template


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    server = config.stash.get(_SERVER, None)
    return f"pgdag: {server.description}" if server else None


_SERVER = pytest.StashKey[harness.Server]()


@pytest.fixture(scope="session")
def admin_dsn() -> str:
    return os.environ[harness.ENV_ADMIN]


@pytest.fixture(scope="session")
def pg_dsn(admin_dsn: str, worker_id: str) -> Iterator[str]:
    """DSN of this xdist worker's own database, migrated in schema ``pgdag``."""
    name = harness.create_worker_database(admin_dsn, os.environ[harness.ENV_TEMPLATE], worker_id)
    yield harness.with_dbname(admin_dsn, name)
    harness.drop_database(admin_dsn, name)


@pytest.fixture
def fresh_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name nobody has used, with a quote and a space in it so that
    every identifier is proven to go through psycopg.sql. Dropped afterwards."""
    name = f'pgdag "t" {uuid.uuid4().hex[:8]}'
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def clean_db(pg_dsn: str) -> str:
    """This worker's database with the ``pgdag`` schema emptied (tables kept)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name NOT IN ('migrations', 'installed_functions')",
            (harness.SCHEMA,),
        ).fetchall()
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} CASCADE").format(
                    sql.SQL(", ").join(
                        sql.SQL("{}.{}").format(sql.Identifier(harness.SCHEMA), sql.SQL(t[0]))
                        for t in tables
                    )
                )
            )
    return pg_dsn


@pytest.fixture
async def app(clean_db: str) -> AsyncIterator[App]:
    """An open App on an empty ``pgdag`` schema of this worker's database."""
    async with App(clean_db, schema=harness.SCHEMA) as opened:
        yield opened


@pytest.fixture
def executions(clean_db: str) -> str:
    """An empty ``public.executions`` table in the test database (jobs of
    pool_jobs.py record each run there); returns its DSN."""
    from pool_helpers import create_executions

    return create_executions(clean_db)
