"""chancy's own virtual environment for ``python -m bench compare``.

chancy is never a dependency of pgdag and never imported by it: the bench makes
``bench/.venv-chancy`` (git-ignored) on first use with ``python -m venv`` and
``pip install chancy==<version> psycopg[binary]`` (psycopg's binary build, as
pgdag uses, so that both sides talk to PostgreSQL through the same driver), and
reuses it afterwards. A marker file written last says the environment is
complete; without it, the directory is made again.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CHANCY_VERSION = "0.26.0"
VENV = Path(__file__).resolve().parent / ".venv-chancy"
_MARKER = ".pgdag-bench-ready"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(version: str = CHANCY_VERSION) -> Path:
    """The python of an environment with chancy ``version`` installed (made if needed)."""
    wanted = f"chancy=={version}"
    marker = VENV / _MARKER
    if marker.exists() and marker.read_text().strip() == wanted and python().exists():
        return python()
    print(f"making {VENV} with {wanted} (once) ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(python()), "-m", "pip", "install", "-q", wanted, "psycopg[binary]"],
        check=True,
    )
    marker.write_text(wanted + "\n")
    return python()
