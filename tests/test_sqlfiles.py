"""Reading and splitting SQL sources: no database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import MigrationError
from worker.sqlfiles import SqlFile, load_functions, load_migrations, render, source_dir

FUNCTION = """-- header comment
-- second line
CREATE OR REPLACE FUNCTION {{schema}}.f(p_x integer)
RETURNS integer LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1; -- a semicolon inside the body
    RETURN p_x;
END;
$fn$;

COMMENT ON FUNCTION {{schema}}.f(integer) IS 'one; two';
"""


def test_statements_keep_their_line_numbers() -> None:
    text = "-- intro\nCREATE TABLE a (x int);\n\n\nCREATE TABLE b (y int); SELECT 1;\n"
    statements = SqlFile(Path("x.sql"), text).statements(text)
    assert [(s.line, s.text) for s in statements] == [
        (2, "CREATE TABLE a (x int);"),
        (5, "CREATE TABLE b (y int);"),
        (5, "SELECT 1;"),
    ]


def test_dollar_quoted_body_is_one_statement() -> None:
    statements = SqlFile(Path("f.sql"), FUNCTION).statements(render(FUNCTION, "s"))
    assert [s.line for s in statements] == [3, 11]
    assert statements[0].text.startswith('CREATE OR REPLACE FUNCTION "s".f(')
    assert statements[0].text.endswith("$fn$;")
    assert statements[1].text == "COMMENT ON FUNCTION \"s\".f(integer) IS 'one; two';"


def test_render_quotes_identifier_and_literal() -> None:
    rendered = render("{{schema}}.t {{schema_literal}}", "we\"ird's")
    assert rendered == "\"we\"\"ird's\".t 'we\"ird''s'"


def test_packaged_sources_are_well_formed() -> None:
    migrations = load_migrations(source_dir("sql"))
    assert [m.version for m in migrations][:1] == [1]
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    functions = load_functions(source_dir("plpgsql"))
    assert "schema_version" in {f.function for f in functions}


def test_misnamed_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_fine.sql").write_text("SELECT 1;")
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"2_bad\.sql"):
        load_migrations(tmp_path)


def test_duplicate_migration_number_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_one.sql").write_text("SELECT 1;")
    (tmp_path / "0001_two.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"version 1 is also used by 0001_one\.sql"):
        load_migrations(tmp_path)


def test_function_file_must_be_named_after_its_function(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "g.sql").write_text(FUNCTION)
    with pytest.raises(MigrationError, match=r"g.sql: a function file must start with"):
        load_functions(tmp_path)


def test_function_file_holds_one_function(tmp_path: Path) -> None:
    (tmp_path / "jobs").mkdir()
    second = FUNCTION.split("COMMENT")[0].replace(".f(", ".h(")
    (tmp_path / "jobs" / "f.sql").write_text(FUNCTION + second)
    with pytest.raises(MigrationError, match=r"f.sql:14: only COMMENT ON FUNCTION or GRANT"):
        load_functions(tmp_path)
