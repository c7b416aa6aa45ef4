"""The PostgreSQL behind the test suite.

The pytest controller (the only process with ``-n 0``) provides one server for
the whole run: ``$PGDAG_TEST_DSN`` if set (and it must answer: a typo must not
silently test something else), else a throwaway embedded server deleted at the
end. It builds one template database holding the migrated schema; each xdist
worker then gets its own database copied from it (``CREATE DATABASE ...
TEMPLATE``), which is fast and keeps workers apart.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from worker.app import App
from worker.embedded import _pgserver
from worker.redact import redacted_dsn

ENV_ADMIN = "_PGDAG_TEST_ADMIN_DSN"
ENV_TEMPLATE = "_PGDAG_TEST_TEMPLATE"
SCHEMA = "pgdag"


def with_dbname(dsn: str, dbname: str) -> str:
    return conninfo.make_conninfo(dsn, dbname=dbname)


@dataclass
class Server:
    admin_dsn: str
    template: str
    _stop: Callable[[], None]
    description: str

    def close(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.template)
                )
            )
        self._stop()


def start() -> Server:
    """Called once, in the controller."""
    given = os.environ.get("PGDAG_TEST_DSN")
    if given:
        try:
            with psycopg.connect(given, connect_timeout=10) as conn:
                version = conn.execute("SHOW server_version").fetchone()
        except psycopg.Error as exc:
            raise RuntimeError(
                f"PGDAG_TEST_DSN is set ({redacted_dsn(given)}) but that server does not answer: "
                f"{exc}. Fix it or unset PGDAG_TEST_DSN to use a throwaway embedded server."
            ) from exc
        admin_dsn, stop, kind = given, (lambda: None), "PGDAG_TEST_DSN"
    else:
        root = Path(tempfile.mkdtemp(prefix="pgdag-test-"))
        server = _pgserver().get_server(root / "data", cleanup_mode="delete")

        def stop() -> None:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)

        admin_dsn, kind = server.get_uri(), "embedded"
        with psycopg.connect(admin_dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    template = f"pgdag_test_{uuid.uuid4().hex[:10]}_template"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    import asyncio

    asyncio.run(App(with_dbname(admin_dsn, template), schema=SCHEMA).migrate())
    description = f"{kind} PostgreSQL {version[0] if version else '?'}"
    return Server(admin_dsn=admin_dsn, template=template, _stop=stop, description=description)


def create_worker_database(admin_dsn: str, template: str, worker: str) -> str:
    """Copy the template for one xdist worker; returns the new database's name."""
    name = template.removesuffix("_template") + f"_{worker}"
    query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
        sql.Identifier(name), sql.Identifier(template)
    )
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(query)
                return name
            except psycopg.errors.ObjectInUse:
                # Another worker is copying the same template right now.
                if attempt == 49:
                    raise
                time.sleep(0.1)
    raise AssertionError("unreachable")


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
