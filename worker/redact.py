"""Keeping the DSN's password (and the DSN itself) out of what pgdag shows."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from urllib.parse import quote

import psycopg
from psycopg import conninfo

MASK = "***"


def redacted_dsn(dsn: str) -> str:
    """The DSN with its password masked, for messages."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    if params.get("password"):
        params["password"] = MASK
    return conninfo.make_conninfo("", **params)


class Redactor:
    """Masks the DSN and its password (as written and percent-encoded), and
    ``$PGPASSWORD``, wherever they appear in a text."""

    def __init__(self, dsn: Callable[[], str | None]) -> None:
        self._dsn = dsn

    def secrets(self) -> list[str]:
        found: list[str] = []
        dsn = self._dsn()
        if dsn:
            found.append(dsn)
            try:
                password = conninfo.conninfo_to_dict(dsn).get("password")
            except psycopg.ProgrammingError:
                password = None
            if password:
                found += [str(password), quote(str(password), safe="")]
        if os.environ.get("PGPASSWORD"):
            found.append(os.environ["PGPASSWORD"])
        return sorted(set(found), key=len, reverse=True)  # the DSN before its password

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, MASK)
        return text


class RedactingFilter(logging.Filter):
    """A handler filter: renders each record's message, then scrubs it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        scrubbed = self.redactor.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_text:
            record.exc_text = self.redactor.scrub(record.exc_text)
        return True
