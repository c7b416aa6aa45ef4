"""App's job helpers against a real database (no worker processes)."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from worker import App, InvalidJobError, JobNotFoundError, JobState, job


@job(queue="q1", priority=3, max_attempts=2)
def sample(x: int = 0) -> int:
    return x


async def test_push_stores_the_job_as_declared(app: App) -> None:
    job_id = await app.push(sample.job.with_kwargs(x=5).with_meta(origin="test"))
    stored = await app.get_job(job_id)
    assert stored is not None
    assert stored.func == "test_app_jobs.sample"
    assert stored.kwargs == {"x": 5}
    assert (stored.queue, stored.priority, stored.max_attempts) == ("q1", 3, 2)
    assert stored.state is JobState.PENDING
    assert stored.attempts == 0
    assert stored.meta == {"origin": "test"}


async def test_push_many_returns_ids_in_order(app: App) -> None:
    ids = await app.push_many([sample.job.with_kwargs(x=i) for i in range(50)])
    assert len(set(ids)) == 50
    for i in (0, 17, 49):
        stored = await app.get_job(ids[i])
        assert stored is not None
        assert stored.kwargs == {"x": i}


async def test_non_json_kwargs_are_refused_naming_the_job_and_nothing_is_written(
    app: App,
) -> None:
    good = sample.job.with_kwargs(x=1)
    bad = sample.job.with_kwargs(x=object())
    with pytest.raises(InvalidJobError, match=r"kwargs of job test_app_jobs\.sample"):
        await app.push_many([good, bad])
    async with app.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pgdag.jobs")
        assert await cur.fetchone() == (0,)


async def test_nul_character_in_kwargs_is_refused_before_anything_is_sent(app: App) -> None:
    with pytest.raises(InvalidJobError, match=r"kwargs of job test_app_jobs\.sample contain"):
        await app.push(sample.job.with_kwargs(text="a\x00b"))
    stored = await app.push(sample.job.with_kwargs(text="a\\u0000b"))  # the six characters
    assert (await app.get_job(stored)).kwargs == {"text": "a\\u0000b"}  # type: ignore[union-attr]


async def test_unique_key_returns_the_unfinished_holder(app: App) -> None:
    first = await app.push(sample.job.with_unique_key("k"))
    again = await app.push(sample.job.with_kwargs(x=9).with_unique_key("k"))
    both = await app.push_many([sample.job.with_unique_key("k2")] * 2)
    assert again == first
    assert both[0] == both[1]
    stored = await app.get_job(first)
    assert stored is not None
    assert stored.kwargs == {}, "the duplicate changed nothing"


async def test_push_inside_the_callers_transaction(app: App, clean_db: str) -> None:
    async with await psycopg.AsyncConnection.connect(clean_db) as conn:
        async with conn.transaction(force_rollback=True):
            kept = await app.push(sample.job, connection=conn)
        assert await app.get_job(kept) is None, "rolled back with the caller's transaction"
        async with conn.transaction():
            committed = await app.push(sample.job, connection=conn)
    assert await app.get_job(committed) is not None


async def test_cancel_pending_job_at_once_and_unknown_ids(app: App) -> None:
    job_id = await app.push(sample.job)
    assert await app.cancel_job(job_id) is JobState.CANCELLED
    done = await app.wait_for_job(job_id, timeout=5)
    assert done.state is JobState.CANCELLED
    assert done.completed_at is not None
    with pytest.raises(JobNotFoundError):
        await app.cancel_job("00000000-0000-0000-0000-000000000000")
    with pytest.raises(KeyError):
        await app.wait_for_job("not-a-uuid", timeout=1)


async def test_wait_for_job_times_out(app: App) -> None:
    job_id = await app.push(sample.job)
    with pytest.raises(TimeoutError):
        await app.wait_for_job(job_id, timeout=0.3)


def test_a_sync_call_without_with_closes_the_app_at_exit(clean_db: str) -> None:
    """A script that calls a sync_* method and never closes the App exits
    quietly: the App opened for it is closed at exit."""
    script = (
        "import sys\n"
        "from worker import App\n"
        "app = App(sys.argv[1])\n"
        "print(app.sync_get_job('00000000-0000-0000-0000-000000000000'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, clean_db], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "None\n"
    assert done.stderr == ""


def test_sync_api_from_plain_code(clean_db: str) -> None:
    with App(clean_db) as app:
        job_id = app.sync_push(sample.job.with_kwargs(x=2))
        with psycopg.connect(clean_db) as conn:
            ids = app.sync_push_many([sample.job] * 3, connection=conn)
        stored = app.sync_get_job(job_id)
        assert stored is not None
        assert stored.kwargs == {"x": 2}
        assert len(ids) == 3
        assert app.sync_get_job(ids[0]) is not None
        assert app.sync_cancel_job(job_id) is JobState.CANCELLED
        assert app.sync_wait_for_job(job_id, timeout=5).state is JobState.CANCELLED


async def test_sync_call_inside_the_event_loop_is_refused(app: App) -> None:
    with pytest.raises(RuntimeError, match="await the async method instead"):
        app.sync_get_job("00000000-0000-0000-0000-000000000000")
