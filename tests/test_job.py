"""Job definitions: no database needed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from worker import InvalidJobError, Job, Retry, job
from worker.job import as_job, import_path, uuid7
from worker.pool.resolve import JobFunctionNotFound, resolve


@job(queue="mail", priority=5, max_attempts=4, timeout=2.5)
async def send(to: str) -> str:
    return to


@job()
def plain() -> int:
    return 42


def test_decorated_function_is_still_the_function() -> None:
    assert plain() == 42
    assert plain.job.func == "test_job.plain"
    assert send.job == Job(
        func="test_job.send", queue="mail", priority=5, max_attempts=4, timeout=2.5
    )


def test_with_methods_return_new_jobs_and_leave_the_original() -> None:
    base = plain.job
    when = datetime(2030, 1, 1, tzinfo=UTC)
    derived = (
        base.with_kwargs(a=1)
        .with_kwargs(b=2)
        .with_priority(7)
        .with_queue("other")
        .with_max_attempts(3)
        .with_scheduled_at(when)
        .with_timeout(9)
        .with_unique_key("u")
        .with_meta(team="x")
        .with_retry(backoff=2, factor=3, limit=60, jitter=0)
    )
    assert base == Job(func="test_job.plain")
    assert derived.kwargs == {"a": 1, "b": 2}
    assert (derived.priority, derived.queue, derived.max_attempts) == (7, "other", 3)
    assert (derived.scheduled_at, derived.timeout, derived.unique_key) == (when, 9, "u")
    assert derived.meta == {"team": "x"}
    assert derived.retry == Retry(backoff=2, factor=3, limit=60, jitter=0)
    with pytest.raises(AttributeError):
        derived.priority = 1  # type: ignore[misc]


def test_with_delay_schedules_relative_to_now() -> None:
    before = datetime.now(UTC)
    delayed = plain.job.with_delay(30)
    assert delayed.scheduled_at is not None
    assert before + timedelta(seconds=29) < delayed.scheduled_at
    assert delayed.scheduled_at < datetime.now(UTC) + timedelta(seconds=31)


def test_pack_and_unpack_round_trip() -> None:
    original = (
        send.job.with_kwargs(to="a@b")
        .with_scheduled_at(datetime(2030, 5, 1, 12, tzinfo=UTC))
        .with_unique_key("k")
        .with_meta(m=1)
        .with_retry(backoff=0.5, jitter=0.2)
    )
    assert Job.unpack(original.pack()) == original


def test_retry_delay_grows_and_is_capped() -> None:
    retry = Retry(backoff=1, factor=2, limit=5)
    assert [retry.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Job(func="nodots"), "import path"),
        (lambda: Job(func="m.f", queue=""), "queue name"),
        (lambda: Job(func="m.f", max_attempts=0), "max_attempts"),
        (lambda: Job(func="m.f", timeout=0), "timeout"),
        (lambda: Job(func="m.f", scheduled_at=datetime(2030, 1, 1)), "timezone-aware"),
        (lambda: Retry(factor=0.5), "factor"),
        (lambda: Retry(jitter=2), "jitter"),
    ],
)
def test_invalid_definitions_are_refused(make: object, message: str) -> None:
    with pytest.raises(InvalidJobError, match=message):
        make()  # type: ignore[operator]


def test_local_functions_cannot_be_jobs() -> None:
    def inner() -> None: ...

    with pytest.raises(InvalidJobError, match="inside a function"):
        import_path(inner)


def test_as_job_rejects_plain_functions() -> None:
    with pytest.raises(TypeError, match="not a job"):
        as_job(print)  # type: ignore[arg-type]


def test_uuid7_is_a_time_ordered_version_7_uuid() -> None:
    ids = [uuid7() for _ in range(100)]
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )
    assert len(set(ids)) == 100
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)


def test_resolve_finds_functions_and_names_what_is_missing() -> None:
    assert resolve("test_job.plain") is plain
    with pytest.raises(JobFunctionNotFound, match="module 'test_job' has no 'missing'"):
        resolve("test_job.missing")
    with pytest.raises(JobFunctionNotFound, match="no_such_module"):
        resolve("no_such_module.f")
