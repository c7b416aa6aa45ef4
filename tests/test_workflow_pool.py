"""Workflows run by real worker processes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import psycopg
import pytest
import workflow_jobs as wj

from worker import App, JobState, Worker
from worker.plugins.leadership import Leadership
from worker.plugins.workflow import InvalidWorkflowError, Sequence, Workflow, WorkflowPlugin


def diamond(name: str = "example") -> Workflow:
    return (
        Workflow(name)
        .add(wj.ok, "top")
        .add(wj.ok, "left", ["top"])
        .add(wj.sync_ok, "right", ["top"])
        .add(wj.ok, "bottom", ["left", "right"])
    )


async def test_reference_diamond_runs_to_completed(app: App) -> None:
    app.plugins.append(WorkflowPlugin())
    async with Worker(app, processes=2, concurrency=10):
        workflow_id = await WorkflowPlugin.push(app, diamond())
        done = await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=60)
    assert done.state is Workflow.State.COMPLETED
    assert done.is_complete
    assert {s.step_id: s.state for s in done.steps.values()} == dict.fromkeys(
        ["top", "left", "right", "bottom"], JobState.SUCCEEDED
    )
    top = await app.get_job(done.steps["top"].job_id or "")
    bottom = await app.get_job(done.steps["bottom"].job_id or "")
    assert top is not None
    assert bottom is not None
    assert top.completed_at is not None
    assert bottom.started_at is not None
    assert bottom.started_at >= top.completed_at
    out = io.StringIO()
    WorkflowPlugin.generate_dot(done, out)
    assert '"bottom" [label="bottom\\n(succeeded)", fillcolor=lightgreen];' in out.getvalue()
    assert 'label="Workflow: example\\nState: completed";' in out.getvalue()


async def test_reference_sequence_runs_in_order(app: App) -> None:
    async with Worker(app, processes=1, concurrency=10):
        sequence_id = await Sequence("example_sequence", [wj.ok, wj.sync_ok]).add(wj.ok).push(app)
        done = await WorkflowPlugin.wait_for_workflow(app, sequence_id, timeout=60)
    assert done.state is Workflow.State.COMPLETED
    jobs = [await app.get_job(s.job_id or "") for s in done.steps.values()]
    starts = [j.started_at for j in jobs if j is not None]
    assert len(starts) == 3
    assert starts == sorted(starts)


async def test_failing_step_fails_the_workflow_and_later_steps_never_start(app: App) -> None:
    flow = Workflow("fails").add("a", wj.ok).add("b", wj.boom, ["a"]).add("c", wj.ok, ["b"])
    async with Worker(app, processes=1, concurrency=5):
        done = await WorkflowPlugin.wait_for_workflow(
            app, await WorkflowPlugin.push(app, flow), timeout=60
        )
    assert done.state is Workflow.State.FAILED
    assert done.steps["b"].state is JobState.FAILED
    assert done.steps["c"].state is JobState.PENDING
    assert done.steps["c"].job_id is None
    failed = await app.get_job(done.steps["b"].job_id or "")
    assert failed is not None
    assert "step failed on purpose" in failed.errors[0]["message"]


async def test_step_retries_are_the_jobs_retries(app: App) -> None:
    step = wj.flaky_twice.job.with_retry(backoff=0.01, jitter=0)
    flow = Workflow("retries").add("flaky", step).add("after", wj.ok, ["flaky"])
    async with Worker(app, processes=1, concurrency=5, poll_interval=0.1):
        done = await WorkflowPlugin.wait_for_workflow(
            app, await WorkflowPlugin.push(app, flow), timeout=60
        )
    assert done.state is Workflow.State.COMPLETED
    flaky = await app.get_job(done.steps["flaky"].job_id or "")
    assert flaky is not None
    assert (flaky.attempts, flaky.result, len(flaky.errors)) == (3, 3, 2)


async def test_many_processes_advance_the_same_workflows_exactly_once(
    app: App, clean_db: str
) -> None:
    flows = [diamond(f"d{i}") for i in range(1000)]
    ids = [await WorkflowPlugin.push(app, f) for f in flows]
    async with Worker(app, processes=8, concurrency=20):
        for workflow_id in ids:
            await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=300)
    with psycopg.connect(clean_db) as conn:
        states = conn.execute("SELECT state, count(*) FROM pgdag.workflows GROUP BY 1").fetchall()
        per_step = conn.execute(
            "SELECT count(*), count(DISTINCT (workflow_id, step_id)) FROM pgdag.jobs"
        ).fetchone()
        claims = conn.execute("SELECT max(claims) FROM pgdag.jobs").fetchone()
    assert states == [("completed", 1000)]
    assert per_step == (4000, 4000), "every step's job created exactly once"
    assert claims == (1,)


async def test_wait_for_workflow_errors(app: App) -> None:
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(app, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(KeyError):
        await WorkflowPlugin.wait_for_workflow(app, "not-a-uuid")
    workflow_id = await WorkflowPlugin.push(app, diamond())  # no pool: it never finishes
    with pytest.raises(asyncio.TimeoutError):
        await WorkflowPlugin.wait_for_workflow(app, workflow_id, timeout=0.3)


async def test_fetch_workflows_filters(app: App) -> None:
    first = await WorkflowPlugin.push(app, diamond("one"))
    second = await WorkflowPlugin.push(app, Workflow("empty"))
    assert [w.id for w in await WorkflowPlugin.fetch_workflows(app)] == [second, first]
    completed = await WorkflowPlugin.fetch_workflows(app, states=["completed"])
    assert [w.id for w in completed] == [second]
    assert [w.id for w in await WorkflowPlugin.fetch_workflows(app, ids=[first])] == [first]
    assert len(await WorkflowPlugin.fetch_workflows(app, limit=1)) == 1
    fetched = await WorkflowPlugin.fetch_workflow(app, first)
    assert fetched is not None
    assert list(fetched.steps) == ["top", "left", "right", "bottom"]
    assert fetched.steps["bottom"].dependencies == ["left", "right"]
    assert fetched.created_at is not None


async def test_cleanup_prunes_only_old_finished_workflows(app: App, clean_db: str) -> None:
    old_done = await WorkflowPlugin.push(app, Workflow("old-done"))
    old_pending = await WorkflowPlugin.push(app, diamond("old-pending"))
    new_done = await WorkflowPlugin.push(app, Workflow("new-done"))
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE pgdag.workflows SET created_at = now() - interval '3 days', "
            "updated_at = now() - interval '2 days', "
            "completed_at = completed_at - interval '2 days' WHERE id = ANY(%s)",
            ([old_done, old_pending],),
        )
    removed = await WorkflowPlugin().cleanup(app)
    assert removed == 1
    remaining = {w.id for w in await WorkflowPlugin.fetch_workflows(app)}
    assert remaining == {old_pending, new_done}
    rule = WorkflowPlugin.Rules.Name() == "new-done"
    assert await WorkflowPlugin(pruning_rule=rule).cleanup(app) == 1

    # a pruned workflow takes its steps with it (no foreign key cascades)
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE pgdag.workflows SET state = 'failed', completed_at = now() - interval '2 days' "
            "WHERE id = %s",
            (old_pending,),
        )
        assert await WorkflowPlugin().cleanup(app) == 1
        left = conn.execute(
            "SELECT count(*) FROM pgdag.workflow_steps WHERE workflow_id = %s", (old_pending,)
        ).fetchone()
    assert left == (0,)


async def test_leadership_hands_over_when_the_leader_goes(clean_db: str) -> None:
    apps = [App(clean_db, plugins=[Leadership(poll_interval=0.1)]) for _ in range(2)]
    leaders = [a.plugins[0] for a in apps]
    tasks = [asyncio.create_task(p.run(None, a)) for p, a in zip(leaders, apps, strict=True)]
    try:
        await _until(lambda: any(p.is_leader for p in leaders), 10)
        first = next(i for i, p in enumerate(leaders) if p.is_leader)
        await asyncio.sleep(0.3)
        assert sum(p.is_leader for p in leaders) == 1
        tasks[first].cancel()
        other = leaders[1 - first]
        await _until(lambda: other.is_leader, 5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls a plain attribute
            await asyncio.sleep(0.05)


async def test_push_many_writes_nothing_when_one_graph_is_bad(app: App) -> None:
    good = diamond("good")
    bad = Workflow("bad").add("a", wj.ok, ["missing"])
    with pytest.raises(InvalidWorkflowError, match="unknown step 'missing'"):
        await WorkflowPlugin.push_many(app, [good, bad])
    assert await WorkflowPlugin.fetch_workflows(app) == []
    ids = await WorkflowPlugin.push_many(app, [good, Workflow("empty")])
    assert ids == [good.id, ids[1]]
    states = {w.name: w.state for w in await WorkflowPlugin.fetch_workflows(app)}
    assert states == {"good": Workflow.State.PENDING, "empty": Workflow.State.COMPLETED}


async def test_repush_of_an_existing_id_keeps_steps_that_ran(app: App) -> None:
    flow = Workflow("grow").add("a", wj.ok)
    async with Worker(app, processes=1, concurrency=5):
        await WorkflowPlugin.wait_for_workflow(
            app, await WorkflowPlugin.push(app, flow), timeout=60
        )
        ran = await WorkflowPlugin.fetch_workflow(app, flow.id)
        assert ran is not None
        flow.add("b", wj.ok, ["a"])
        assert await WorkflowPlugin.push(app, flow) == flow.id
        done = await WorkflowPlugin.wait_for_workflow(app, flow.id, timeout=60)
    assert done.state is Workflow.State.COMPLETED
    assert done.steps["a"].job_id == ran.steps["a"].job_id, "a did not run again"
    assert done.steps["b"].state is JobState.SUCCEEDED


async def test_pruner_calls_every_plugins_cleanup(app: App, clean_db: str) -> None:
    from worker.plugins.pruner import Pruner

    finished = await WorkflowPlugin.push(app, Workflow("finished"))
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "UPDATE pgdag.workflows SET completed_at = now() - interval '2 days' WHERE id = %s",
            (finished,),
        )
    pruner = Pruner()
    app.plugins.extend([Leadership(), WorkflowPlugin(), pruner])
    assert await pruner.prune(app) == 1
    assert await WorkflowPlugin.fetch_workflow(app, finished) is None
