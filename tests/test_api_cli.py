"""``pgdag api`` as a user starts it: the address and token it prints, what it
refuses, and the DSN's password nowhere in its output or answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from api_helpers import Reply, fetch
from psycopg import conninfo

from worker.api.auth import ENV_TOKEN

SECRET = "s3cret-pw-never-shown"


@pytest.fixture
def dsn_with_password(clean_db: str) -> tuple[str, str]:
    """A DSN of the test database that holds a password, and that password. The
    suite's server trusts local connections, so an added password is not checked;
    a DSN that already has one keeps it (and that one must not show either)."""
    params = conninfo.conninfo_to_dict(clean_db)
    if params.get("password"):
        return clean_db, str(params["password"])
    return conninfo.make_conninfo(clean_db, password=SECRET), SECRET


@dataclass
class Started:
    process: subprocess.Popen[str]
    lines: list[str]
    base: str
    dashboard: str

    def stop(self) -> str:
        """SIGTERM, then everything the process printed (stdout and stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return "".join(self.lines) + out


def start_api(*args: str, env: dict[str, str] | None = None) -> Started:
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "api", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Application startup complete" in line:
            found = re.search(r"at (http://127\.0\.0\.1:\d+)(/\S*)", "".join(lines))
            assert found, lines
            return Started(process, lines, found.group(1), found.group(1) + found.group(2))
    process.kill()
    raise AssertionError("pgdag api did not start:\n" + "".join(lines) + process.stdout.read())


@pytest.fixture
def api_process() -> Iterator[list[Started]]:
    started: list[Started] = []
    yield started
    for item in started:
        if item.process.poll() is None:
            item.process.kill()
            item.process.wait()


def test_generated_token_is_printed_with_a_ready_url_and_no_password(
    dsn_with_password: tuple[str, str], api_process: list[Started]
) -> None:
    dsn, password = dsn_with_password
    env = {k: v for k, v in os.environ.items() if k != ENV_TOKEN}
    api = start_api("--dsn", dsn, env=env)
    api_process.append(api)
    printed = "".join(api.lines)
    token = re.search(r"#token=(\S+)", api.dashboard)
    assert token, printed
    assert f"Authorization: Bearer {token.group(1)}" in printed

    replies: list[Reply] = [
        fetch(api.base + "/api/v1/workflows"),
        fetch(api.base + "/api/v1/workflows", token="wrong-token-0123456789"),
        fetch(api.base + "/api/v1/workflows/00000000-0000-0000-0000-000000000000", token.group(1)),
        fetch(api.base + "/api/v1/jobs/nope", token.group(1)),
        fetch(api.base + "/api/v1/jobs?limit=x", token.group(1)),
        fetch(api.base + "/api/v1/info", token.group(1)),
        fetch(api.base + "/"),
    ]
    assert [r.status for r in replies] == [401, 401, 404, 400, 400, 200, 200]
    ok = fetch(api.base + "/api/v1/workflows", token.group(1))
    assert ok.status == 200 and ok.body["workflows"] == []

    output = api.stop()
    assert api.process.returncode == 0, output
    for text in [output, *(r.text for r in replies), *(str(r.headers) for r in replies)]:
        assert password not in text
        assert dsn not in text


def test_token_from_the_environment_is_not_printed(
    clean_db: str, api_process: list[Started]
) -> None:
    token = "from-the-environment-0123456789"
    api = start_api("--dsn", clean_db, env={ENV_TOKEN: token})
    api_process.append(api)
    assert api.dashboard == api.base + "/"
    assert fetch(api.base + "/api/v1/jobs", token).status == 200
    assert fetch(api.base + "/api/v1/jobs").status == 401
    output = api.stop()
    assert token not in output
    assert "$PGDAG_API_TOKEN" in output


def test_no_auth_must_be_asked_for(clean_db: str, api_process: list[Started]) -> None:
    api = start_api("--dsn", clean_db, "--no-auth")
    api_process.append(api)
    assert fetch(api.base + "/api/v1/jobs").status == 200
    output = api.stop()
    assert "--no-auth" in output and "WARNING" in output


def run_api(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "api", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_short_token_is_refused(clean_db: str) -> None:
    result = run_api("--dsn", clean_db, env={ENV_TOKEN: "short"})
    assert result.returncode == 1
    assert "$PGDAG_API_TOKEN is too short (5 characters, at least 16)" in result.stderr


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    dsn = f"postgresql://someone:{SECRET}@127.0.0.1:9/nowhere?connect_timeout=5"
    result = run_api("--dsn", dsn)
    assert result.returncode == 1
    assert "pgdag: error: cannot connect to the database" in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_an_unmigrated_schema_is_refused(clean_db: str) -> None:
    result = run_api("--dsn", clean_db, "--schema", "nothing_here")
    assert result.returncode == 1
    assert "schema 'nothing_here' has no pgdag tables: run `pgdag migrate` first" in result.stderr
