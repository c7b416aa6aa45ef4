"""Applying ``sql/`` migrations and installing ``plpgsql/`` functions.

Everything happens in one transaction under a transaction-level advisory lock
keyed by the schema name: concurrent ``migrate`` calls queue behind each other,
the first applies, the rest find nothing to do. A failing statement rolls the
whole transaction back and raises :class:`MigrationError` naming the file, the
line and the statement. A run with nothing new writes nothing: migrations are
recorded by version and function files by checksum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from worker.errors import ConfigurationError, MigrationError
from worker.sqlfiles import (
    Migration,
    SqlFile,
    load_functions,
    load_migrations,
    render,
    source_dir,
)

log = logging.getLogger("pgdag.migrate")

# First key of pg_advisory_xact_lock(int4, int4); the second is hashtext(schema).
_LOCK_CLASS = 0x70676461  # "pgda"

_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s, hashtext(%s))")
_TABLE_EXISTS = sql.SQL("SELECT to_regclass(%s) IS NOT NULL")
_APPLIED = sql.SQL("SELECT version, name, checksum FROM {}.migrations ORDER BY version")
_RECORD_MIGRATION = sql.SQL(
    "INSERT INTO {}.migrations (version, name, checksum) VALUES (%s, %s, %s)"
)
_INSTALLED = sql.SQL("SELECT file, checksum FROM {}.installed_functions")
_RECORD_FUNCTION = sql.SQL(
    "INSERT INTO {}.installed_functions (file, function_name, checksum) VALUES (%s, %s, %s) "
    "ON CONFLICT (file) DO UPDATE SET function_name = excluded.function_name, "
    "checksum = excluded.checksum, installed_at = now()"
)


@dataclass(frozen=True)
class MigrationReport:
    schema: str
    version: int
    applied: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.installed)

    def summary(self) -> str:
        if not self.changed:
            return f"schema {self.schema}: up to date (migration {self.version:04d})"
        parts = []
        if self.applied:
            parts.append(f"applied {len(self.applied)} migration(s) ({', '.join(self.applied)})")
        if self.installed:
            parts.append(f"installed {len(self.installed)} function(s)")
        return f"schema {self.schema}: {'; '.join(parts)}; now at migration {self.version:04d}"


def validate_schema_name(schema: str) -> None:
    if not schema or "\x00" in schema:
        raise ConfigurationError(f"invalid schema name {schema!r}: empty or contains NUL")
    if len(schema.encode()) > 48:
        # Notification channels are "<schema>.<what>" and PostgreSQL caps them at 63 bytes.
        raise ConfigurationError(f"invalid schema name {schema!r}: longer than 48 bytes")
    if "$" in schema:
        # Function bodies are dollar-quoted; a '$' in the name could close them.
        raise ConfigurationError(f"invalid schema name {schema!r}: '$' is not allowed")


async def migrate(
    conn: psycopg.AsyncConnection,
    schema: str,
    *,
    sql_dir: Path | None = None,
    plpgsql_dir: Path | None = None,
) -> MigrationReport:
    """Bring ``schema`` up to date on ``conn`` (which must not be in a transaction)."""
    validate_schema_name(schema)
    migrations = load_migrations(sql_dir or source_dir("sql"))
    functions = load_functions(plpgsql_dir or source_dir("plpgsql"))
    ident = sql.Identifier(schema)
    async with conn.transaction():
        await conn.execute(_LOCK, (_LOCK_CLASS, schema))
        applied = await _applied_migrations(conn, schema)
        _check_history(migrations, applied, schema)
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            await _run_file(conn, migration, schema)
            await conn.execute(
                _RECORD_MIGRATION.format(ident),
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration.path.stem)
            log.info("schema %s: applied %s", schema, migration.path.name)
        cur = await conn.execute(_INSTALLED.format(ident))
        installed = dict(await cur.fetchall())
        changed: list[str] = []
        for function in functions:
            # After a migration every function is installed again: a migration may
            # have dropped one (to change its signature) or changed what it reads.
            if not done and installed.get(function.key) == function.checksum:
                continue
            await _run_file(conn, function, schema)
            await conn.execute(
                _RECORD_FUNCTION.format(ident),
                (function.key, function.function, function.checksum),
            )
            changed.append(function.key)
        version = max([m.version for m in migrations], default=0)
    return MigrationReport(schema=schema, version=version, applied=done, installed=changed)


async def _applied_migrations(conn: psycopg.AsyncConnection, schema: str) -> dict[int, str]:
    qualified = sql.SQL("{}.migrations").format(sql.Identifier(schema)).as_string(conn)
    cur = await conn.execute(_TABLE_EXISTS, (qualified,))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return {}
    cur = await conn.execute(_APPLIED.format(sql.Identifier(schema)))
    return {version: checksum for version, _name, checksum in await cur.fetchall()}


def _check_history(migrations: list[Migration], applied: dict[int, str], schema: str) -> None:
    known = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise MigrationError(
            f"schema {schema} has migration {unknown[0]:04d} applied, which this version of "
            "pgdag does not have: run a newer pgdag against it",
            path=f"sql/{unknown[0]:04d}_*.sql",
        )
    for version, checksum in applied.items():
        migration = known[version]
        if migration.checksum != checksum:
            raise MigrationError(
                f"{migration.path}: changed after it was applied to schema {schema}; "
                "migrations are forward-only, add a new file instead",
                path=str(migration.path),
            )


async def _run_file(conn: psycopg.AsyncConnection, source: SqlFile, schema: str) -> None:
    rendered = render(source.text, schema)
    for statement in source.statements(rendered):
        try:
            await conn.execute(statement.text.encode())
        except psycopg.Error as exc:
            first = statement.text.splitlines()[0]
            raise MigrationError(
                f"{source.path}:{statement.line}: {exc.diag.message_primary or exc} "
                f"(in statement starting {first!r})",
                path=str(source.path),
                line=statement.line,
                statement=statement.text,
            ) from exc
