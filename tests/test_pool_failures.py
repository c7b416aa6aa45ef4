"""The worker pool facing jobs that misbehave (unknown functions, results
that are not JSON or that PostgreSQL cannot store, SystemExit, os._exit),
processes that cannot start, and the logs of worker processes.
(The rest of the pool: ``test_pool``.)
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import pytest
from pool_helpers import (
    WAIT,
    Collect,
    pids_of,
    wait_replaced,
    wait_running,
    wait_until,
)
from pool_jobs import (
    alogs,
    araises_keyboard_interrupt,
    araises_system_exit,
    chatty,
    echo,
    exits_process,
    logs,
    raises_keyboard_interrupt,
    raises_nul,
    raises_system_exit,
    returns_nul,
    returns_object,
    returns_set,
)

from worker import App, Job, JobState, Worker

# -- jobs that misbehave --------------------------------------------------------


async def test_bad_jobs_fail_with_a_clear_error_and_the_pool_goes_on(
    app: App, executions: str
) -> None:
    bad = {
        "missing function": Job(func="pool_jobs.does_not_exist"),
        "missing module": Job(func="no_such_module.f"),
        "set result": returns_set.job,
        "object result": returns_object.job,
        "sync SystemExit": raises_system_exit.job,
        "async SystemExit": araises_system_exit.job,
        "sync KeyboardInterrupt": raises_keyboard_interrupt.job,
        "async KeyboardInterrupt": araises_keyboard_interrupt.job,
    }
    async with Worker(app, processes=1, concurrency=10, lease_seconds=3, grace_period=2) as pool:
        old = pool.pids
        ids = dict(zip(bad, await app.push_many(bad.values()), strict=True))
        good = await app.push(echo.job.with_kwargs(n=1))
        done = {what: await app.wait_for_job(job_id, timeout=WAIT) for what, job_id in ids.items()}
        assert (await app.wait_for_job(good, timeout=WAIT)).result == 1
        assert pool.pids == old, "no bad job took the process down"

        # a job that ends its process: recovered as lost, the process is replaced
        exits = await app.push(exits_process.job.with_kwargs(dsn=executions, tag="exit"))
        exited = await app.wait_for_job(exits, timeout=WAIT)
        new = await wait_replaced(pool, old)
        after = await app.push(echo.job.with_kwargs(n=2))
        assert (await app.wait_for_job(after, timeout=WAIT)).result == 2

    errors: dict[str, dict[str, Any]] = {}
    for what, job in done.items():
        assert job.state is JobState.FAILED, what
        assert job.attempts == 1 and job.result is None, what
        [errors[what]] = job.errors
        assert errors[what]["outcome"] == "failed" and errors[what]["traceback"], what
    assert "'pool_jobs.does_not_exist' not found" in errors["missing function"]["message"]
    assert "'no_such_module.f' not found" in errors["missing module"]["message"]
    for what in ("set result", "object result"):
        assert errors[what]["type"] == "ResultNotJSON"
        assert "return value is not JSON" in errors[what]["message"]
    for kind in ("sync", "async"):
        assert errors[f"{kind} SystemExit"]["type"] == "SystemExit"
        assert errors[f"{kind} KeyboardInterrupt"]["type"] == "KeyboardInterrupt"
    assert exited.state is JobState.FAILED
    assert [e["type"] for e in exited.errors] == ["WorkerLost"]
    assert await pids_of(app, "exit") == old
    assert new != old


async def test_values_postgresql_cannot_store_fail_the_job_not_the_process(app: App) -> None:
    async with Worker(app, processes=1, concurrency=4, lease_seconds=3, grace_period=2) as pool:
        old = pool.pids
        # pushed together: their outcomes may go in one batch with a good one
        ids = await app.push_many([returns_nul.job, raises_nul.job, echo.job.with_kwargs(n=3)])
        returned, raised, good = [await app.wait_for_job(i, timeout=WAIT) for i in ids]
        after = await app.push(echo.job.with_kwargs(n=4))
        assert (await app.wait_for_job(after, timeout=WAIT)).result == 4
        assert pool.pids == old

    assert (good.state, good.result) == (JobState.SUCCEEDED, 3)
    assert (returned.state, returned.attempts, returned.result) == (JobState.FAILED, 1, None)
    [error] = returned.errors
    assert (error["type"], error["outcome"]) == ("ResultNotStorable", "failed")
    assert "return value cannot be stored" in error["message"]
    assert (raised.state, raised.attempts) == (JobState.FAILED, 1)
    [error] = raised.errors
    assert error["type"] == "ValueError"
    assert error["message"] == "a message with a NUL \\x00 in it"
    assert "ValueError: a message with a NUL \\x00 in it" in error["traceback"]


# -- processes that cannot start -----------------------------------------------


async def test_a_replacement_that_cannot_start_is_retried_until_it_can(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    collect = Collect()
    logging.getLogger("pgdag").addHandler(collect)
    try:
        async with Worker(app, processes=1, imports=["pool_jobs"], grace_period=2) as pool:
            [first] = pool.pids
            monkeypatch.setenv("POOL_JOBS_REFUSE_IMPORT", "1")  # for processes spawned now
            os.kill(first, signal.SIGKILL)

            def refused() -> bool:
                return any("refuses to be imported" in r.getMessage() for r in collect.records)

            await wait_until(refused, "a replacement to fail to start")
            monkeypatch.delenv("POOL_JOBS_REFUSE_IMPORT")
            job_id = await app.push(echo.job.with_kwargs(n=5))
            assert (await app.wait_for_job(job_id, timeout=WAIT)).result == 5
            assert len(pool.pids) == 1 and first not in pool.pids
    finally:
        logging.getLogger("pgdag").removeHandler(collect)


# -- logs ----------------------------------------------------------------------


async def test_job_logs_reach_the_supervisors_handlers_with_job_context(app: App) -> None:
    collect = Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    try:
        async with Worker(app, processes=1, concurrency=4, grace_period=2) as pool:
            ids = {
                "sync": await app.push(logs.job.with_kwargs(message="hello")),
                "async": await app.push(alogs.job.with_kwargs(message="hello")),
            }
            for job_id in ids.values():
                assert (await app.wait_for_job(job_id, timeout=WAIT)).state is JobState.SUCCEEDED
            [pid] = pool.pids

            def mine() -> list[logging.LogRecord]:
                return [r for r in collect.records if r.name == "pool_jobs"]

            await wait_until(lambda: len(mine()) == 3, "the job's log records")
    finally:
        root.removeHandler(collect)

    by_message = {r.getMessage(): r for r in mine()}
    assert set(by_message) == {"sync hello", "sync failure hello", "async hello"}
    for message, record in by_message.items():
        kind = message.split()[0]
        assert record.processName == "pgdag-worker-0", message
        assert record.process == pid != os.getpid(), message
        assert record.job_id == ids[kind], message  # type: ignore[attr-defined]
        expected = "pool_jobs.logs" if kind == "sync" else "pool_jobs.alogs"
        assert record.job_func == expected, message  # type: ignore[attr-defined]
    failure = by_message["sync failure hello"]
    assert failure.levelno == logging.ERROR
    assert "RuntimeError: logged with its traceback" in (failure.exc_text or "")


async def test_logs_still_flow_after_a_child_is_killed_while_logging(
    app: App, executions: str
) -> None:
    collect = Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    try:
        async with Worker(app, processes=2, concurrency=2, grace_period=2) as pool:
            old = pool.pids
            await app.push(chatty.job.with_kwargs(dsn=executions, tag="chatty"))
            await wait_running(app, "chatty")
            await wait_until(
                lambda: any(r.getMessage().startswith("chatter") for r in collect.records),
                "chatter",
            )
            [victim] = await pids_of(app, "chatty")
            os.kill(victim, signal.SIGKILL)
            await wait_replaced(pool, old)
            ids = [await app.push(logs.job.with_kwargs(message=f"after {i}")) for i in range(4)]
            for job_id in ids:
                assert (await app.wait_for_job(job_id, timeout=WAIT)).state is JobState.SUCCEEDED

            def arrived() -> bool:
                return sum(r.getMessage().startswith("sync after") for r in collect.records) == 4

            await wait_until(arrived, "the log records of jobs run after the kill", timeout=10)
    finally:
        root.removeHandler(collect)
