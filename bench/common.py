"""What every benchmark shares: a throwaway schema, run metadata, the table, the JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from worker import App, Worker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# A measurement window around "push, then wait until all finished": given the open
# App and the running pool, an async context manager (compare's CPU meter).
Window = Callable[[App, Worker], AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def fresh_app(dsn: str | None) -> AsyncIterator[App]:
    """An open App on a new, migrated schema, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    app = App(dsn, schema=schema, max_connections=4)
    try:
        await app.migrate()
        async with app:
            yield app
    finally:
        async with await psycopg.AsyncConnection.connect(app.dsn, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def git_dirty() -> bool:
    """True when tracked files differ from HEAD (the figures are not HEAD's)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return False
    return bool(out.stdout.strip())


async def run_metadata(app: App) -> dict[str, Any]:
    async with app.connection() as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
    return {
        "git_sha": git_sha(),
        "postgresql": row[0] if row else "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(samples: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def print_table(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1
) -> None:
    """A plain-text table; the first ``left`` columns are aligned left, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print(
            "  ".join(
                c.rjust(w) if i >= left else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def write_json(name: str, data: dict[str, Any], path: str | None) -> Path:
    target = Path(path) if path else RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"\nwrote {target}")
    return target
