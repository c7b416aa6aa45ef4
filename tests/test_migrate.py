"""Migrations against a real PostgreSQL."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from worker import App, ConfigurationError, MigrationError
from worker.sqlfiles import source_dir


def _tables(dsn: str, schema: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {r[0] for r in rows}


def _schema_exists(dsn: str, schema: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return row is not None and row[0] == 1


def _copy_sources(tmp_path: Path) -> tuple[Path, Path]:
    sql_dir, plpgsql_dir = tmp_path / "sql", tmp_path / "plpgsql"
    shutil.copytree(source_dir("sql"), sql_dir)
    shutil.copytree(source_dir("plpgsql"), plpgsql_dir)
    return sql_dir, plpgsql_dir


def _row_versions(dsn: str, schema: str) -> list[tuple[str, str]]:
    """xmin of every bookkeeping row and of every function of the schema:
    any write to them (even an identical UPDATE or CREATE OR REPLACE) changes it."""
    ident = sql.Identifier(schema)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT 'migration ' || version, xmin::text FROM {}.migrations "
                "UNION ALL SELECT 'file ' || file, xmin::text FROM {}.installed_functions "
                "UNION ALL SELECT 'proc ' || p.oid::regprocedure, p.xmin::text "
                "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s "
                "ORDER BY 1"
            ).format(ident, ident),
            (schema,),
        ).fetchall()
    return [(name, xmin) for name, xmin in rows]


async def test_migrate_creates_schema_and_second_run_is_a_no_op(
    pg_dsn: str, fresh_schema: str
) -> None:
    app = App(pg_dsn, schema=fresh_schema)
    first = await app.migrate()
    assert first.applied and first.installed
    assert {"migrations", "installed_functions"} <= _tables(pg_dsn, fresh_schema)
    before = _row_versions(pg_dsn, fresh_schema)

    second = await app.migrate()

    assert not second.changed
    assert second.summary() == f"schema {fresh_schema}: up to date (migration {first.version:04d})"
    assert _row_versions(pg_dsn, fresh_schema) == before
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute(
            sql.SQL("SELECT {}.schema_version()").format(sql.Identifier(fresh_schema))
        ).fetchone()
    assert version == (first.version,)


async def test_two_schemas_in_one_database_do_not_collide(pg_dsn: str, fresh_schema: str) -> None:
    other = fresh_schema + " two"
    try:
        await App(pg_dsn, schema=fresh_schema).migrate()
        report = await App(pg_dsn, schema=other).migrate()
        assert report.applied, "the second schema must get its own tables"
        assert _tables(pg_dsn, other) == _tables(pg_dsn, fresh_schema)
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(other)))


def test_four_concurrent_cli_migrations_all_succeed_and_apply_once(
    pg_dsn: str, fresh_schema: str
) -> None:
    command = [sys.executable, "-m", "worker", "migrate", "--dsn", pg_dsn, "--schema", fresh_schema]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    summaries = sorted(out.strip() for out, _err in outputs)
    assert sum("applied" in s for s in summaries) == 1, summaries
    assert sum("up to date" in s for s in summaries) == 3, summaries
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT version, count(*) FROM {}.migrations GROUP BY version").format(
                sql.Identifier(fresh_schema)
            )
        ).fetchall()
    assert rows and all(count == 1 for _version, count in rows)


async def test_broken_migration_names_file_and_line_and_leaves_no_schema(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    broken = sql_dir / "0999_broken.sql"
    broken.write_text(
        "-- a migration with a typo\n"
        "CREATE TABLE {{schema}}.fine (id bigint);\n"
        "\n"
        "CREATE TABLE {{schema}}.broken (id bigint REFERENCES {{schema}}.missing (id));\n"
    )
    with pytest.raises(MigrationError) as caught:
        await App(pg_dsn, schema=fresh_schema).migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    error = caught.value
    assert error.path == str(broken)
    assert error.line == 4
    assert error.statement is not None and "broken" in error.statement
    assert f"{broken}:4:" in str(error) and "missing" in str(error)
    assert not _schema_exists(pg_dsn, fresh_schema), "everything must be rolled back"


async def test_broken_function_rolls_back_migrations_too(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    (plpgsql_dir / "meta" / "broken_fn.sql").write_text(
        "CREATE OR REPLACE FUNCTION {{schema}}.broken_fn() RETURNS int\n"
        "LANGUAGE sql AS $fn$ SELECT no_such_column FROM {{schema}}.migrations $fn$;\n"
    )
    with pytest.raises(MigrationError, match=r"broken_fn.sql:1: .*no_such_column"):
        await App(pg_dsn, schema=fresh_schema).migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    assert not _schema_exists(pg_dsn, fresh_schema)


async def test_changed_function_is_reinstalled_and_only_it(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    extra = plpgsql_dir / "meta" / "answer.sql"
    extra.write_text(
        "CREATE OR REPLACE FUNCTION {{schema}}.answer() RETURNS int\n"
        "LANGUAGE sql AS $fn$ SELECT 41 $fn$;\n"
    )
    app = App(pg_dsn, schema=fresh_schema)
    await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    extra.write_text(extra.read_text().replace("41", "42"))
    report = await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    assert report.applied == [] and report.installed == ["meta/answer.sql"]
    with psycopg.connect(pg_dsn) as conn:
        answer = conn.execute(
            sql.SQL("SELECT {}.answer()").format(sql.Identifier(fresh_schema))
        ).fetchone()
    assert answer == (42,)


async def test_edited_applied_migration_is_refused(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    app = App(pg_dsn, schema=fresh_schema)
    await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    first = sql_dir / "0001_bootstrap.sql"
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match=r"0001_bootstrap.sql: changed after it was applied"):
        await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)


async def test_schema_newer_than_the_code_is_refused(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    (sql_dir / "0999_future.sql").write_text("SELECT 1;\n")
    await App(pg_dsn, schema=fresh_schema).migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    with pytest.raises(MigrationError, match="has migration 0999 applied"):
        await App(pg_dsn, schema=fresh_schema).migrate()


def test_cli_reports_a_bad_schema_name_and_exits_non_zero(pg_dsn: str, fresh_schema: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "migrate", "--dsn", pg_dsn, "--schema", "bad$name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "invalid schema name 'bad$name'" in result.stderr


@pytest.mark.parametrize("name", ["", "x" * 49, "a$b", "nul\x00"])
def test_unusable_schema_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid schema name"):
        App("dbname=unused", schema=name)


async def test_step_jobs_from_before_0008_keep_their_ids_and_complete(
    pg_dsn: str, fresh_schema: str, tmp_path: Path
) -> None:
    """0008 makes a step's job id a function of its step. A step job created
    before it (a random id), already running when the migration is applied,
    still completes and advances its workflow; new step jobs take the new ids,
    and a step job with any other id is refused by the constraint."""
    sql_dir, plpgsql_dir = _copy_sources(tmp_path)
    later = sorted(p.name for p in sql_dir.glob("*.sql") if p.name >= "0008")
    for name in later:  # the schema as it was at 0007
        (sql_dir / name).rename(tmp_path / name)
    app = App(pg_dsn, schema=fresh_schema)
    await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    s = sql.Identifier(fresh_schema)
    wid = "00000000-0000-4000-8000-000000000001"
    steps = [
        {"step_id": "a", "job": {"func": "m.f"}, "dependencies": []},
        {"step_id": "b", "job": {"func": "m.f"}, "dependencies": ["a"]},
    ]
    payload = json.dumps([{"id": wid, "name": "w", "steps": steps}])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SELECT {}.push_workflows(%s::jsonb)").format(s), (payload,))
        # as an older version wrote it: a random id, and the step linked to it
        with conn.transaction():
            old = conn.execute(
                sql.SQL(
                    "UPDATE {}.jobs SET id = gen_random_uuid() WHERE workflow_id = %s RETURNING id"
                ).format(s),
                (wid,),
            ).fetchone()
            assert old is not None
            conn.execute(
                sql.SQL("UPDATE {}.workflow_steps SET job_id = %s WHERE step_id = 'a'").format(s),
                (old[0],),
            )
        claimed = conn.execute(
            sql.SQL("SELECT id, claims FROM {}.claim_jobs('w1', ARRAY['default'], 10, 60)").format(
                s
            )
        ).fetchall()
        assert [row[0] for row in claimed] == [old[0]]

    for name in later:
        (tmp_path / name).rename(sql_dir / name)
    report = await app.migrate(sql_dir=sql_dir, plpgsql_dir=plpgsql_dir)
    assert report.applied == [name.removesuffix(".sql") for name in later]

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        job_id, claims = claimed[0]
        outcome = json.dumps([{"id": str(job_id), "claims": claims, "outcome": "succeeded"}])
        conn.execute(
            sql.SQL("SELECT * FROM {}.complete_jobs('w1', %s::jsonb)").format(s), (outcome,)
        )
        rows = conn.execute(
            sql.SQL(
                "SELECT s.step_id, s.state, "
                "j.id = {}._step_job_id(s.workflow_id, s.step_id) "
                "FROM {}.workflow_steps AS s JOIN {}.jobs AS j ON j.id = s.job_id "
                "WHERE s.workflow_id = %s ORDER BY s.step_id"
            ).format(s, s, s),
            (wid,),
        ).fetchall()
        assert rows == [("a", "succeeded", False), ("b", "pending", True)]
        with pytest.raises(psycopg.errors.CheckViolation, match="jobs_step_names_workflow"):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.jobs (id, func, queue, scheduled_at, created_at, "
                    "workflow_id, step_id) VALUES (gen_random_uuid(), 'm.f', 'default', now(), "
                    "now(), %s, 'c')"
                ).format(s),
                (wid,),
            )
