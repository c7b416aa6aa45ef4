"""The embedded default server: where its data lives, and that it stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worker import embedded

pytestmark = pytest.mark.slow


def test_explicit_dsn_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDAG_DSN", "dbname=from_env")
    assert embedded.resolve_dsn("dbname=explicit") == "dbname=explicit"
    assert embedded.resolve_dsn(None) == "dbname=from_env"


def test_data_dir_carries_major_version_and_honours_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGDAG_DATA_DIR", str(tmp_path))
    assert embedded.data_dir() == tmp_path.resolve() / f"postgresql-{embedded.postgres_major()}"


def test_data_dir_of_root_is_outside_the_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGDAG_DATA_DIR", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    path = embedded.data_dir()
    assert not path.is_relative_to(Path.home().resolve())
    assert path.parent == Path("/var/lib/pgdag")


_PROGRAM = """
import sys, time
import psycopg
from worker.embedded import embedded_dsn
dsn = embedded_dsn()
with psycopg.connect(dsn) as conn:
    conn.execute("SELECT 1")
print(dsn, flush=True)
time.sleep(60)
"""


def _postmaster_pid(data: Path) -> int | None:
    pidfile = data / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_server_starts_reuses_its_data_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PGDAG_DSN"}
    env["PGDAG_DATA_DIR"] = str(tmp_path)
    data = tmp_path / f"postgresql-{embedded.postgres_major()}"
    for run in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-c", _PROGRAM],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        dsn = proc.stdout.readline().strip()
        assert dsn, proc.stderr.read() if proc.stderr else ""
        postmaster = _postmaster_pid(data)
        assert postmaster is not None and _alive(postmaster)

        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM
        assert f"data in {data}" in err and err.count("\n") == 1, err
        deadline = time.monotonic() + 20
        while _alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(postmaster), f"run {run}: the server outlived its last user"
        assert (data / "PG_VERSION").exists(), "the data directory is kept for the next run"
