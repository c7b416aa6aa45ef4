"""The worker pool with real processes, real signals and the real database:
throughput, processes that die or are told to stop, timeouts, cancellation,
retries and latency. (Jobs that misbehave and logging: ``test_pool_failures``.)

Job functions live in ``pool_jobs``: spawned worker processes import them by
path (pytest puts ``tests/`` on ``sys.path`` and spawned processes inherit it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pool_helpers import (
    WAIT,
    pids_of,
    row,
    wait_replaced,
    wait_running,
    wait_until,
)
from pool_jobs import asleepy, awaits_for, echo, flaky, sleepy, waits_for

from worker import App, JobState, Worker

# -- throughput and exactly-once claiming ----------------------------------------


async def test_four_processes_drain_10000_jobs_each_claimed_once(app: App) -> None:
    count = 10_000
    await app.push_many([echo.job.with_kwargs(n=i) for i in range(count)])

    async def drained() -> bool:
        async with app.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pgdag.jobs WHERE state IN ('succeeded', 'failed')"
            )
            done = await cur.fetchone()
        return done == (count,)

    async with Worker(app, processes=4, concurrency=50, grace_period=2) as pool:
        assert len(set(pool.pids)) == 4
        await wait_until(drained, "10,000 jobs to finish", timeout=120)
        workers = set(pool.worker_ids)

    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT state, count(*), min(claims), max(claims), min(attempts), max(attempts),"
            " sum((result)::bigint), count(DISTINCT worker_id), array_agg(DISTINCT worker_id)"
            " FROM pgdag.jobs GROUP BY state"
        )
        stats = await cur.fetchall()
    assert len(stats) == 1, stats
    state, total, min_claims, max_claims, min_attempts, max_attempts, results, n, ids = stats[0]
    assert (state, total) == ("succeeded", count)
    assert (min_claims, max_claims, min_attempts, max_attempts) == (1, 1, 1, 1)
    assert results == count * (count - 1) // 2, "every job's own result was stored"
    assert n > 1, "the work was shared between processes"
    assert set(ids) <= workers


# -- processes that die or are told to stop ------------------------------------


async def test_a_burst_is_claimed_a_quarter_of_the_slots_first(app: App, executions: str) -> None:
    """A process that starts claiming takes a quarter of its slots, and only
    when that came back full, a moment later, the rest: a burst of work is not
    taken whole by the first process awake (the others, notified at the same
    moment, claim their share meanwhile). Seen here as the claims' timestamps:
    8 jobs on 8 slots start in a claim of 2, then one of 6."""
    async with Worker(app, processes=1, concurrency=8, grace_period=2):
        ids = await app.push_many(
            [asleepy.job.with_kwargs(dsn=executions, tag=f"t{i}", first=1.0) for i in range(8)]
        )
        for job_id in ids:
            await app.wait_for_job(job_id, timeout=WAIT)
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT started_at, count(*) FROM pgdag.jobs GROUP BY started_at ORDER BY 1"
        )
        claims = [n for _, n in await cur.fetchall()]
    assert claims == [2, 6]


async def test_sigkill_of_a_child_recovers_its_running_job_and_not_its_finished_one(
    app: App, executions: str
) -> None:
    async with Worker(app, processes=1, concurrency=4, lease_seconds=2, grace_period=2) as pool:
        finished = await app.push(sleepy.job.with_kwargs(dsn=executions, tag="done", first=0))
        assert (await app.wait_for_job(finished, timeout=WAIT)).state is JobState.SUCCEEDED
        running = await app.push(
            sleepy.job.with_kwargs(dsn=executions, tag="long", first=60).with_max_attempts(2)
        )
        await wait_running(app, "long")
        [victim] = await pids_of(app, "long")
        assert pool.pids == [victim]
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        recovered = await app.wait_for_job(running, timeout=WAIT)
        elapsed = time.monotonic() - t0
        [replacement] = await wait_replaced(pool, [victim])

    assert recovered.state is JobState.SUCCEEDED
    assert recovered.attempts == 2
    assert elapsed < 15, f"recovered in {elapsed:.1f}s, the job would have run for 60s"
    [lost] = recovered.errors
    assert lost["type"] == "WorkerLost" and lost["attempt"] == 1 and lost["outcome"] == "lost"
    assert await pids_of(app, "long") == [victim, replacement]
    # the job that succeeded before the kill stays done and never ran again
    done = await row(app, finished)
    assert (done["state"], done["claims"], done["attempts"]) == ("succeeded", 1, 1)
    assert await pids_of(app, "done") == [victim]


PROGRAM = """
import asyncio, logging, sys
sys.path.insert(0, sys.argv[2])
from worker import App, Worker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(name)s: %(message)s")

async def main():
    async with App(sys.argv[1], schema="pgdag") as app:
        pool = Worker(app, processes=2, concurrency=8, grace_period=float(sys.argv[3]))
        await pool.start()
        runner = asyncio.create_task(pool.run_until_signal())
        await asyncio.sleep(0)  # the runner's first step installs its signal handlers
        print("ready", *pool.pids, flush=True)
        await runner
    print("drained", flush=True)

if __name__ == "__main__":  # spawned worker processes import this module
    asyncio.run(main())
"""


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Starts a program (its source, then its arguments) in a subprocess with
    a pipe for its stdout; kills whatever is left of it afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(source: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
        path = tmp_path / f"program_{len(started)}.py"
        path.write_text(source)
        proc = subprocess.Popen(
            [sys.executable, str(path), *args], stdout=subprocess.PIPE, text=True, **popen
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


async def test_sigterm_drains_finishing_short_jobs_and_releasing_long_ones(
    app: App, executions: str, program: Callable[..., subprocess.Popen[str]]
) -> None:
    grace = 3.0
    proc = program(PROGRAM, executions, str(Path(__file__).parent), str(grace))
    assert proc.stdout is not None
    ready = await asyncio.to_thread(proc.stdout.readline)
    assert ready.startswith("ready"), ready
    children = [int(pid) for pid in ready.split()[1:]]
    assert len(children) == 2

    # long jobs outlive the grace period; short ones finish when told to ("go")
    long = {
        f"long-{kind}-{i}": await app.push(
            fn.job.with_kwargs(dsn=executions, tag=f"long-{kind}-{i}", first=60)
        )
        for kind, fn in (("sync", sleepy), ("async", asleepy))
        for i in range(2)
    }
    short = {
        f"short-{kind}-{i}": await app.push(
            fn.job.with_kwargs(dsn=executions, tag=f"short-{kind}-{i}", signal="go")
        )
        for kind, fn in (("sync", waits_for), ("async", awaits_for))
        for i in range(2)
    }
    await wait_running(app, *long, *short)
    os.kill(proc.pid, signal.SIGTERM)
    t0 = time.monotonic()
    await asyncio.sleep(1)  # draining; the short jobs still run
    async with app.connection() as conn:
        await conn.execute("INSERT INTO public.executions (tag, pid) VALUES ('go', 0)")
    code = await asyncio.to_thread(proc.wait, grace + 20)
    elapsed = time.monotonic() - t0
    rest = await asyncio.to_thread(proc.stdout.read)

    assert code == 0
    assert rest.strip() == "drained"
    assert elapsed < grace + 10, f"drained in {elapsed:.1f}s with a {grace:g}s grace period"
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for tag, job_id in short.items():
        done = await row(app, job_id)
        assert done["state"] == "succeeded", (tag, done)
        assert (done["attempts"], done["claims"], done["errors"]) == (1, 1, []), tag
    for tag, job_id in long.items():
        back = await row(app, job_id)
        assert back["state"] == "pending", (tag, back)
        assert (back["attempts"], back["claims"], back["errors"]) == (0, 1, []), tag
        assert back["lease_expires_at"] is None and back["completed_at"] is None
        assert len(await pids_of(app, tag)) == 1, "it ran (once) before the signal"


UNGUARDED = """
import asyncio, sys
from worker import App, Worker

async def main():
    async with App(sys.argv[1], schema="pgdag") as app:
        await Worker(app, processes=2).start()

asyncio.run(main())  # no __main__ guard: each spawned process dies running this again
"""


async def test_start_reports_processes_that_die_before_they_are_ready(
    clean_db: str, program: Callable[..., subprocess.Popen[str]]
) -> None:
    t0 = time.monotonic()
    proc = program(UNGUARDED, clean_db, stderr=subprocess.PIPE)
    _, stderr = await asyncio.to_thread(proc.communicate, timeout=90)
    elapsed = time.monotonic() - t0

    assert proc.returncode != 0
    assert "WorkerStartupError" in stderr and "exited with code 1 before it was ready" in stderr
    assert elapsed < 20, f"took {elapsed:.1f}s to notice"


# -- timeouts, cancellation, retries --------------------------------------------


async def test_sync_timeout_replaces_the_process_and_releases_its_other_jobs(
    app: App, executions: str
) -> None:
    async with Worker(app, processes=1, concurrency=4, lease_seconds=3, grace_period=2) as pool:
        old = pool.pids
        collateral = {
            tag: await app.push(fn.job.with_kwargs(dsn=executions, tag=tag, first=60, later=0))
            for fn, tag in ((sleepy, "collateral-sync"), (asleepy, "collateral-async"))
        }
        await wait_running(app, *collateral)
        timed = await app.push(
            sleepy.job.with_kwargs(dsn=executions, tag="timed", first=60, later=0)
            .with_timeout(1)
            .with_max_attempts(2)
            .with_retry(backoff=0.05, jitter=0)
        )
        t0 = time.monotonic()
        timed_out = await app.wait_for_job(timed, timeout=WAIT)
        elapsed = time.monotonic() - t0
        new = await wait_replaced(pool, old)
        others = {tag: await app.wait_for_job(i, timeout=WAIT) for tag, i in collateral.items()}

    assert timed_out.state is JobState.SUCCEEDED, timed_out.errors
    assert timed_out.attempts == 2
    assert elapsed < 15
    [error] = timed_out.errors
    assert (error["type"], error["outcome"], error["attempt"]) == ("TimeoutError", "timeout", 1)
    assert "timed out after 1s" in error["message"]
    assert await pids_of(app, "timed") == old + new
    for tag, done in others.items():
        stored = await row(app, done.id)
        assert done.state is JobState.SUCCEEDED, (tag, done.errors)
        # released when the process went: the attempt was given back
        assert (stored["attempts"], stored["claims"], stored["errors"]) == (1, 2, []), tag
        assert await pids_of(app, tag) == old + new, tag


async def test_async_timeout_cancels_the_job_without_replacing_the_process(
    app: App, executions: str
) -> None:
    async with Worker(app, processes=1, concurrency=4, lease_seconds=3, grace_period=2) as pool:
        old = pool.pids
        neighbour = await app.push(asleepy.job.with_kwargs(dsn=executions, tag="n", first=2))
        timed = await app.push(
            asleepy.job.with_kwargs(dsn=executions, tag="timed", first=60).with_timeout(0.5)
        )
        t0 = time.monotonic()
        timed_out = await app.wait_for_job(timed, timeout=WAIT)
        elapsed = time.monotonic() - t0
        other = await app.wait_for_job(neighbour, timeout=WAIT)
        after = await app.push(echo.job.with_kwargs(n=7))
        assert (await app.wait_for_job(after, timeout=WAIT)).result == 7
        assert pool.pids == old

    assert timed_out.state is JobState.FAILED
    assert elapsed < 10
    [error] = timed_out.errors
    assert (error["type"], error["outcome"]) == ("TimeoutError", "timeout")
    assert "timed out after 0.5s" in error["message"]
    assert other.state is JobState.SUCCEEDED
    assert (await row(app, neighbour))["claims"] == 1
    assert await pids_of(app, "timed") == old
    assert await pids_of(app, "n") == old


async def test_cancel_running_jobs_async_in_place_and_sync_by_replacing_the_process(
    app: App, executions: str
) -> None:
    async with Worker(app, processes=1, concurrency=4, lease_seconds=3, grace_period=2) as pool:
        running_async = await app.push(asleepy.job.with_kwargs(dsn=executions, tag="a", first=60))
        running_sync = await app.push(sleepy.job.with_kwargs(dsn=executions, tag="s", first=60))
        await wait_running(app, "a", "s")
        old = pool.pids

        t0 = time.monotonic()
        assert await app.cancel_job(running_async) is JobState.RUNNING
        cancelled_async = await app.wait_for_job(running_async, timeout=WAIT)
        async_elapsed = time.monotonic() - t0
        assert pool.pids == old, "an async job is cancelled in place"
        assert (await row(app, running_sync))["state"] == "running", "its neighbour runs on"

        t0 = time.monotonic()
        assert await app.cancel_job(running_sync) is JobState.RUNNING
        cancelled_sync = await app.wait_for_job(running_sync, timeout=WAIT)
        sync_elapsed = time.monotonic() - t0
        new = await wait_replaced(pool, old)

        after = await app.push(sleepy.job.with_kwargs(dsn=executions, tag="after", first=0))
        assert (await app.wait_for_job(after, timeout=WAIT)).state is JobState.SUCCEEDED

    for done, elapsed in ((cancelled_async, async_elapsed), (cancelled_sync, sync_elapsed)):
        assert done.state is JobState.CANCELLED
        assert done.cancel_requested and done.completed_at is not None
        assert done.attempts == 1 and done.errors == []
        assert elapsed < 10, f"cancelled after {elapsed:.1f}s, the job runs for 60s"
    assert await pids_of(app, "a") == old and await pids_of(app, "s") == old
    assert await pids_of(app, "after") == new


async def test_failing_job_is_retried_until_it_succeeds(app: App, executions: str) -> None:
    # a retry is due 0.05 s later; polling (not a notification) finds it
    async with Worker(app, processes=1, concurrency=4, poll_interval=0.2, grace_period=2):
        job_id = await app.push(
            flaky.job.with_kwargs(dsn=executions, tag="f", failures=2)
            .with_max_attempts(3)
            .with_retry(backoff=0.05, jitter=0)
        )
        done = await app.wait_for_job(job_id, timeout=WAIT)

    assert done.state is JobState.SUCCEEDED
    assert (done.attempts, done.result) == (3, 3)
    assert [e["attempt"] for e in done.errors] == [1, 2]
    for number, error in enumerate(done.errors, 1):
        assert (error["type"], error["outcome"]) == ("ValueError", "failed")
        assert error["message"] == f"flaky failure number {number}"
        assert error["traceback"].startswith("Traceback (most recent call last)")
        assert f"ValueError: flaky failure number {number}" in error["traceback"]
        assert "in flaky" in error["traceback"]
    assert len(await pids_of(app, "f")) == 3


# -- latency --------------------------------------------------------------------


async def test_idle_pool_runs_a_pushed_job_and_wait_returns_promptly(app: App) -> None:
    # Polls every 30 s: only LISTEN/NOTIFY can explain a prompt answer.
    async with Worker(app, processes=1, concurrency=4, poll_interval=30, grace_period=2):
        await asyncio.sleep(0.5)  # idle: waiting for a notification
        for n in range(3):
            t0 = time.monotonic()
            job_id = await app.push(echo.job.with_kwargs(n=n))
            done = await app.wait_for_job(job_id, timeout=WAIT, interval=30)
            elapsed = time.monotonic() - t0
            assert done.result == n
            assert elapsed < 2, f"job {n} took {elapsed:.2f}s from push to wait_for_job"
