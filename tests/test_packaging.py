"""The wheel carries sql/, plpgsql/ and the dashboard's static files, and an
installed (non-editable) copy migrates and finds its dashboard."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from worker.sqlfiles import source_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("pgdag-*.whl")
    return built


def test_wheel_contains_every_sql_source(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"worker/_{kind}/{path.relative_to(source_dir(kind)).as_posix()}"
        for kind in ("sql", "plpgsql")
        for path in source_dir(kind).rglob("*.sql")
    }
    assert expected, "there must be sources to ship"
    assert expected <= names, sorted(expected - names)
    assert "worker/__init__.py" in names


def test_wheel_contains_the_dashboard(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "worker" / "api" / "static"
    expected = {f"worker/api/static/{path.name}" for path in static.iterdir()}
    assert {"worker/api/static/index.html", "worker/api/static/dashboard.js"} <= expected
    assert expected <= names, sorted(expected - names)


def test_installed_wheel_migrates_a_database(
    wheel: Path, tmp_path: Path, pg_dsn: str, fresh_schema: str
) -> None:
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    # Dependencies come from this environment's site-packages, added as a plain
    # path: its .pth files (and so the editable install of pgdag) are not run.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = subprocess.run(
        [str(python), "-c", "import worker; print(worker.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(where).is_relative_to(target), where

    page = subprocess.run(
        [str(python), "-c", "from worker.api.server import STATIC; print(STATIC / 'index.html')"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(page).is_relative_to(target) and Path(page).is_file(), page

    result = subprocess.run(
        [str(target / "bin" / "pgdag"), "migrate", "--dsn", pg_dsn, "--schema", fresh_schema],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "applied" in result.stdout
    with psycopg.connect(pg_dsn) as conn:
        version = conn.execute(
            sql.SQL("SELECT {}.schema_version()").format(sql.Identifier(fresh_schema))
        ).fetchone()
    assert version is not None and version[0] >= 1
