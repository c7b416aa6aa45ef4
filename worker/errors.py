"""Exceptions raised by pgdag, each with a message that names the culprit."""

from __future__ import annotations


class PgdagError(Exception):
    """Base class of every error pgdag raises on purpose."""


class ConfigurationError(PgdagError):
    """A setting (DSN, schema name, option) is unusable."""


class MigrationError(PgdagError):
    """A migration or function file could not be applied; nothing was written.

    ``path`` is the file, ``line`` the 1-based line where the failing statement
    starts, ``statement`` its text.
    """

    def __init__(
        self, message: str, *, path: str, line: int | None = None, statement: str | None = None
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.statement = statement


class InvalidJobError(PgdagError, ValueError):
    """A job (or its arguments) cannot be stored; nothing was written."""


class JobNotFoundError(PgdagError, KeyError):
    """No job has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"
