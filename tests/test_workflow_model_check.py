"""Property test: random DAGs with random outcomes and completion orders, run
through the SQL functions, checked against a small pure-Python model."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

W = "model-worker"


class Model:
    """The semantics, in a few lines: a step may start once every dependency
    succeeded and no step of the workflow failed; the workflow completes when
    every step succeeded and fails when one fails."""

    def __init__(self, deps: dict[str, list[str]], fails: set[str]) -> None:
        self.deps, self.fails = deps, fails
        self.state = dict.fromkeys(deps, "pending")
        self.started: set[str] = set()

    @property
    def failed(self) -> bool:
        return "failed" in self.state.values()

    def ready(self) -> set[str]:
        if self.failed:
            return set()
        return {
            s
            for s, ds in self.deps.items()
            if s not in self.started and all(self.state[d] == "succeeded" for d in ds)
        }

    def finish(self, step: str) -> None:
        self.state[step] = "failed" if step in self.fails else "succeeded"

    def workflow_state(self) -> str:
        if self.failed:
            return "failed"
        if all(v == "succeeded" for v in self.state.values()):
            return "completed"
        return "running" if self.started else "pending"


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, list[str]], set[str]]:
    n = draw(st.integers(min_value=1, max_value=30))
    names = [f"s{i}" for i in range(n)]
    deps = {
        name: sorted(draw(st.sets(st.sampled_from(names[:i]), max_size=4))) if i else []
        for i, name in enumerate(names)
    }
    fails = draw(st.sets(st.sampled_from(names), max_size=2))
    return deps, fails


@pytest.fixture(scope="module")
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=dags(), data=st.data())
def test_random_workflows_follow_the_model(
    conn: psycopg.Connection, graph: tuple[dict[str, list[str]], set[str]], data: st.DataObject
) -> None:
    deps, fails = graph
    queue = f"model-{uuid.uuid4().hex}"  # this example's jobs only
    wid = str(uuid.uuid4())
    steps = [
        {
            "step_id": s,
            "dependencies": ds,
            # a failing step fails its first attempt and is retried once before failing
            "job": {
                "func": "m.f",
                "queue": queue,
                "max_attempts": 2 if s in fails else 1,
                "retry": {"backoff": 0, "jitter": 0},
            },
        }
        for s, ds in deps.items()
    ]
    conn.execute(
        "SELECT pgdag.push_workflows(%s::jsonb)",
        (json.dumps([{"id": wid, "name": "model", "steps": steps}]),),
    )
    model = Model(deps, fails)
    running: dict[str, tuple[str, int]] = {}
    for _round in range(200):
        claimed = conn.execute(
            "SELECT c.id, c.claims, j.step_id, c.attempts FROM pgdag.claim_jobs(%s, %s, 100, 60) c "
            "JOIN pgdag.jobs j ON j.id = c.id",
            (W, [queue]),
        ).fetchall()
        states = dict(
            conn.execute(
                "SELECT step_id, state FROM pgdag.workflow_steps WHERE workflow_id = %s", (wid,)
            ).fetchall()
        )
        for job_id, claims, step, attempts in claimed:
            # never before every dependency succeeded, never after a failure
            assert all(states[d] == "succeeded" for d in deps[step]), (step, states)
            if attempts == 1:
                assert step in model.ready(), (step, model.state)
                model.started.add(step)
            running[step] = (str(job_id), claims)
        if not running:
            break
        finishing = data.draw(
            st.lists(st.sampled_from(sorted(running)), min_size=1, unique=True), label="finish"
        )
        outcomes = []
        for step in finishing:
            job_id, claims = running.pop(step)
            outcome = "failed" if step in fails else "succeeded"
            outcomes.append({"id": job_id, "claims": claims, "outcome": outcome})
            attempts = conn.execute(
                "SELECT attempts, max_attempts FROM pgdag.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            assert attempts is not None
            if outcome == "succeeded" or attempts[0] == attempts[1]:
                model.finish(step)
        conn.execute("SELECT * FROM pgdag.complete_jobs(%s, %s::jsonb)", (W, json.dumps(outcomes)))
        while True:
            advanced, skipped, _ = conn.execute(
                "SELECT * FROM pgdag.advance_workflows()"
            ).fetchone()
            if not advanced and not skipped:
                break
    assert not running
    assert not model.ready(), f"steps {model.ready()} could run but were never started"
    assert model.workflow_state() in ("completed", "failed")
    final = conn.execute("SELECT state FROM pgdag.workflows WHERE id = %s", (wid,)).fetchone()
    assert final == (model.workflow_state(),)
    stored = dict(
        conn.execute(
            "SELECT step_id, state FROM pgdag.workflow_steps WHERE workflow_id = %s", (wid,)
        ).fetchall()
    )
    assert stored == model.state
    created = conn.execute(
        "SELECT count(*) FROM pgdag.jobs WHERE workflow_id = %s", (wid,)
    ).fetchone()
    assert created == (len(model.started),), "one job per started step, never more"
