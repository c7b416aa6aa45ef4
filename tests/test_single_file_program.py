"""A job defined in the __main__ of a single-file program runs when that
program starts the pool itself (spawned workers re-import the script)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import asyncio, sys
from worker import App, Worker, job

@job()
def double(x: int) -> int:
    return 2 * x

@job()
async def shout(word: str) -> str:
    return word.upper()

async def main(dsn: str) -> None:
    async with App(dsn) as app:
        async with Worker(app, processes=1, concurrency=4):
            first = await app.push(double.job.with_kwargs(x=21))
            second = await app.push(shout.job.with_kwargs(word="hi"))
            first = await app.wait_for_job(first, timeout=60)
            second = await app.wait_for_job(second, timeout=60)
    print(double.job.func, first.state.value, first.result, second.state.value, second.result)

if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
"""


def test_jobs_of_a_script_run_in_the_pool_it_starts(clean_db: str, tmp_path: Path) -> None:
    script = tmp_path / "single_file.py"
    script.write_text(PROGRAM)
    result = subprocess.run(
        [sys.executable, str(script), clean_db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["__main__.double", "succeeded", "42", "succeeded", "HI"]
