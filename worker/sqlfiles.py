"""Reading the SQL sources: numbered migrations in ``sql/`` and functions in ``plpgsql/``.

Files refer to the application's schema as ``{{schema}}`` (an identifier) and
``{{schema_literal}}`` (a string literal); :func:`render` substitutes both with
text quoted by :mod:`psycopg.sql`, so any schema name PostgreSQL accepts works.
Statements are split with sqlparse and keep the line they start on, so an error
can name the file, the line and the statement.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlparse
from psycopg import sql

from worker.errors import MigrationError

_PACKAGE_DIR = Path(__file__).resolve().parent
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_CREATE_FUNCTION = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+\{\{schema\}\}\.(\w+)\s*\(", re.IGNORECASE
)
_SECONDARY_STATEMENT = re.compile(r"^\s*(COMMENT\s+ON\s+FUNCTION|GRANT)\b", re.IGNORECASE)


def source_dir(name: str) -> Path:
    """The directory holding ``sql`` or ``plpgsql``: inside the installed wheel
    (``worker/_sql``) or, in a source checkout, at the repository's top level."""
    packaged = _PACKAGE_DIR / f"_{name}"
    if packaged.is_dir():
        return packaged
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    raise MigrationError(f"cannot find the {name}/ directory of pgdag", path=str(checkout))


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the file where the statement starts


@dataclass(frozen=True)
class SqlFile:
    path: Path
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def statements(self, rendered: str) -> list[Statement]:
        """Split ``rendered`` (this file after :func:`render`) into statements.

        Rendering replaces placeholders on the line they stand on, so line
        numbers of the rendered text are those of the file.
        """
        out: list[Statement] = []
        offset = 0
        for parsed in sqlparse.parse(rendered):
            chunk = str(parsed)
            line = rendered.count("\n", 0, offset) + 1
            offset += len(chunk)
            if not sqlparse.format(chunk, strip_comments=True).strip(" \n\t;"):
                continue  # only comments or white space
            lines = chunk.split("\n")
            while not lines[0].strip() or lines[0].lstrip().startswith("--"):
                lines.pop(0)
                line += 1
            out.append(Statement(text="\n".join(lines).strip(), line=line))
        return out


@dataclass(frozen=True)
class Migration(SqlFile):
    version: int
    name: str


@dataclass(frozen=True)
class FunctionFile(SqlFile):
    function: str  # the function's name, which is also the file's stem

    @property
    def key(self) -> str:
        """Stable identity of the file, relative to the plpgsql directory."""
        return f"{self.path.parent.name}/{self.path.name}"


def render(text: str, schema: str) -> str:
    identifier = sql.Identifier(schema).as_string()
    literal = sql.Literal(schema).as_string()
    return text.replace("{{schema_literal}}", literal).replace("{{schema}}", identifier)


def load_migrations(directory: Path) -> list[Migration]:
    """Every ``NNNN_name.sql`` of ``directory`` in version order.

    Any other ``.sql`` file, or two files with one number, is an error: a
    misnamed migration silently skipped would be worse than a refusal.
    """
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path}: migration files are named NNNN_what_it_does.sql "
                "(four digits, lower-case words)",
                path=str(path),
            )
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"{path}: version {version} is also used by {found[version].path.name}",
                path=str(path),
            )
        found[version] = Migration(
            path=path, text=path.read_text(encoding="utf-8"), version=version, name=match.group(2)
        )
    return [found[v] for v in sorted(found)]


def load_functions(directory: Path) -> list[FunctionFile]:
    """Every ``<entity>/<function>.sql`` below ``directory``, checked for shape:
    one ``CREATE [OR REPLACE] FUNCTION {{schema}}.<function>`` named after the
    file, optionally followed by ``COMMENT ON FUNCTION`` / ``GRANT``."""
    files: list[FunctionFile] = []
    for path in sorted(directory.rglob("*.sql")):
        text = path.read_text(encoding="utf-8")
        function = path.stem
        candidate = FunctionFile(path=path, text=text, function=function)
        statements = candidate.statements(text)
        if not statements:
            raise MigrationError(f"{path}: the file holds no statement", path=str(path))
        first = _CREATE_FUNCTION.match(statements[0].text)
        if first is None or first.group(1) != function:
            raise MigrationError(
                f"{path}: a function file must start with "
                f"CREATE OR REPLACE FUNCTION {{{{schema}}}}.{function}(...)",
                path=str(path),
                line=statements[0].line,
                statement=statements[0].text,
            )
        for extra in statements[1:]:
            if _SECONDARY_STATEMENT.match(extra.text) is None:
                raise MigrationError(
                    f"{path}:{extra.line}: only COMMENT ON FUNCTION or GRANT may follow the "
                    "function (one function per file)",
                    path=str(path),
                    line=extra.line,
                    statement=extra.text,
                )
        files.append(candidate)
    return files
