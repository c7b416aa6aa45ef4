"""Workflow advancement in SQL, driven step by step (no worker processes)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import psycopg
import pytest
import workflow_jobs as wj

from worker.job import uuid7
from worker.plugins.workflow import Workflow
from worker.queries import STEP_STATE, Queries

W = "w1"


def job_def(func: str = "m.f", **extra: Any) -> dict[str, Any]:
    return {"func": func, "kwargs": {}, "queue": "default", **extra}


def step(step_id: str, deps: list[str], **job: Any) -> dict[str, Any]:
    return {"step_id": step_id, "job": job_def(**job), "dependencies": deps}


def push(conn: psycopg.Connection, steps: list[tuple[str, list[str]]], **job: Any) -> str:
    wid = str(uuid.uuid4())
    payload = {
        "id": wid,
        "name": "wf",
        "steps": [step(s, deps, **job) for s, deps in steps],
    }
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (json.dumps([payload]),))
    return wid


def claim(conn: psycopg.Connection, limit: int = 100) -> dict[str, tuple[str, int]]:
    """step_id -> (job id, claims) of every claimed job of a workflow."""
    rows = conn.execute(
        "SELECT c.id, c.claims, j.step_id FROM pgdag.claim_jobs(%s, %s, %s, 60) AS c "
        "JOIN pgdag.jobs AS j ON j.id = c.id",
        (W, ["default"], limit),
    ).fetchall()
    return {step: (str(job_id), claims) for job_id, claims, step in rows}


def complete(
    conn: psycopg.Connection,
    claimed: dict[str, tuple[str, int]],
    advance_now: bool = False,
    **outcomes: str,
) -> None:
    """complete_jobs; by default without its own advancement (p_workflow_batch 0),
    so that the tests drive advance_workflows step by step."""
    batch = [
        {"id": job_id, "claims": claims, "outcome": outcomes.get(step, "succeeded")}
        for step, (job_id, claims) in claimed.items()
    ]
    conn.execute(
        "SELECT * FROM pgdag.complete_jobs(%s, %s::jsonb, p_workflow_batch => %s)",
        (W, json.dumps(batch), 1000 if advance_now else 0),
    )


def advance(conn: psycopg.Connection, limit: int = 1000) -> tuple[int, int, int]:
    row = conn.execute("SELECT * FROM pgdag.advance_workflows(%s)", (limit,)).fetchone()
    assert row is not None
    return row


def steps(conn: psycopg.Connection, wid: str) -> dict[str, tuple[str, bool, int]]:
    """Each step's state as readers see it (running while its job runs), whether it
    has its job, and its count of dependencies left."""
    rows = conn.execute(
        f"SELECT s.step_id, {STEP_STATE}, s.job_id IS NOT NULL, s.remaining_deps "
        "FROM pgdag.workflow_steps AS s LEFT JOIN pgdag.jobs AS j ON j.id = s.job_id "
        "WHERE s.workflow_id = %s",
        (wid,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def waiting_events(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM pgdag.workflow_events").fetchone()
    assert row is not None
    return row[0]


def workflow(conn: psycopg.Connection, wid: str) -> tuple[str, int, int]:
    row = conn.execute(
        "SELECT state, steps_total, steps_succeeded FROM pgdag.workflows WHERE id = %s", (wid,)
    ).fetchone()
    assert row is not None
    return row


@pytest.fixture
def conn(clean_db: str) -> psycopg.Connection:
    with psycopg.connect(clean_db, autocommit=True) as connection:
        yield connection


DIAMOND = [("top", []), ("left", ["top"]), ("right", ["top"]), ("bottom", ["left", "right"])]


def test_diamond_advances_step_by_step_to_completed(conn: psycopg.Connection) -> None:
    wid = push(conn, DIAMOND)
    assert workflow(conn, wid) == ("pending", 4, 0)
    assert steps(conn, wid)["top"] == ("pending", True, 0)
    assert steps(conn, wid)["bottom"] == ("pending", False, 2)

    first = claim(conn)
    assert set(first) == {"top"}
    assert steps(conn, wid)["top"][0] == "running"
    assert workflow(conn, wid)[0] == "running", "running when its first step starts"

    complete(conn, first)
    assert steps(conn, wid)["top"][0] == "succeeded"
    assert advance(conn) == (1, 0, 2)
    middle = claim(conn)
    assert set(middle) == {"left", "right"}

    complete(conn, {"left": middle["left"]})
    assert advance(conn) == (1, 0, 0)
    assert steps(conn, wid)["bottom"] == ("pending", False, 1)
    complete(conn, {"right": middle["right"]})
    assert advance(conn) == (1, 0, 1)

    complete(conn, claim(conn))
    advance(conn)
    assert workflow(conn, wid) == ("completed", 4, 4)
    assert advance(conn) == (0, 0, 0), "nothing left to do"


def test_a_claimed_step_reads_as_running_from_its_job_and_keeps_its_first_start(
    conn: psycopg.Connection,
) -> None:
    """claim_jobs does not write the step row (one write less per step on the hot
    path): readers take "running" and the start from the job; the completion writes
    the first attempt's start to the step, and a retry does not move it."""
    wid = push(conn, [("a", [])], max_attempts=2)
    fetch = Queries("pgdag").fetch_workflows_query

    def shown() -> dict[str, Any]:
        row = conn.execute(fetch, {"states": None, "ids": [wid], "limit": 1}).fetchone()
        assert row is not None
        return row[6][0]

    first = claim(conn)
    stored = conn.execute(
        "SELECT s.state, s.started_at, j.started_at FROM pgdag.workflow_steps AS s "
        "JOIN pgdag.jobs AS j ON j.id = s.job_id WHERE s.workflow_id = %s",
        (wid,),
    ).fetchone()
    assert stored is not None and stored[:2] == ("pending", None), "the claim left the row"
    started = stored[2]
    assert shown()["state"] == "running"
    assert shown()["started_at"] is not None

    complete(conn, first, a="failed")
    assert shown()["state"] == "retrying"
    conn.execute("UPDATE pgdag.jobs SET scheduled_at = now() - interval '1 minute'")
    claim(conn)
    assert shown()["state"] == "running", "running again, on its second attempt"
    row = conn.execute(
        "SELECT started_at FROM pgdag.workflow_steps WHERE workflow_id = %s", (wid,)
    ).fetchone()
    assert row == (started,), "the step keeps the start of its first attempt"


def test_completion_advances_its_workflows_in_the_same_transaction(
    conn: psycopg.Connection,
) -> None:
    wid = push(conn, DIAMOND)
    complete(conn, claim(conn), advance_now=True)
    assert steps(conn, wid)["left"] == ("pending", True, 0)
    assert steps(conn, wid)["right"] == ("pending", True, 0)
    assert waiting_events(conn) == 0, "the finished step was handed over in memory"
    assert advance(conn) == (0, 0, 0), "nothing was left for advance_workflows"
    for _ in range(2):
        complete(conn, claim(conn), advance_now=True)
    assert workflow(conn, wid) == ("completed", 4, 4)


def test_steps_made_ready_together_are_claimed_workflow_by_workflow(
    conn: psycopg.Connection,
) -> None:
    # the middle steps of 20 diamonds become due at one moment; their job ids are
    # hashes, yet each claim of two takes both middle steps of one workflow (so
    # that one process completes them, usually in one batch)
    wids = {push(conn, DIAMOND) for _ in range(20)}
    tops = conn.execute(
        "SELECT id, claims FROM pgdag.claim_jobs(%s, %s, 100, 60)", (W, ["default"])
    )
    done = [{"id": str(i), "claims": c, "outcome": "succeeded"} for i, c in tops.fetchall()]
    assert len(done) == 20
    conn.execute("SELECT FROM pgdag.complete_jobs(%s, %s::jsonb)", (W, json.dumps(done)))
    due = conn.execute(
        "SELECT count(DISTINCT scheduled_at) FROM pgdag.jobs WHERE state = 'pending'"
    )
    assert due.fetchone() == (1,)
    seen = set()
    for _ in wids:
        rows = conn.execute(
            "SELECT j.workflow_id, j.step_id FROM pgdag.claim_jobs(%s, %s, 2, 60) AS c "
            "JOIN pgdag.jobs AS j ON j.id = c.id",
            (W, ["default"]),
        ).fetchall()
        assert len({w for w, _ in rows}) == 1, rows
        assert sorted(s for _, s in rows) == ["left", "right"]
        seen.add(str(rows[0][0]))
    assert seen == wids


def test_step_job_ids_start_with_their_workflows_id(conn: psycopg.Connection) -> None:
    # keyed in the order workflows are created (UUIDv7): step jobs' index entries
    # go to the same few pages, not to random pages of a large primary key
    wid = str(uuid7())
    payload = {"id": wid, "name": "wf", "steps": [step(s, deps) for s, deps in DIAMOND]}
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (json.dumps([payload]),))
    complete(conn, claim(conn), advance_now=True)
    rows = conn.execute(
        "SELECT step_id, id::text FROM pgdag.jobs WHERE workflow_id = %s ORDER BY step_id", (wid,)
    ).fetchall()
    assert [s for s, _ in rows] == ["left", "right", "top"]
    assert {i[:18] for _, i in rows} == {wid[:18]}, "first 64 bits: the workflow's"
    assert len({i for _, i in rows}) == 3


def test_complete_and_claim_takes_the_next_step_in_the_same_transaction(
    conn: psycopg.Connection,
) -> None:
    wid = push(conn, [("a", []), ("b", ["a"]), ("c", ["b"])])
    ((a_id, a_claims),) = claim(conn).values()
    call = "SELECT id, claims FROM pgdag.complete_and_claim_jobs(%s, %s::jsonb, %s, %s, 60)"
    done = json.dumps([{"id": a_id, "claims": a_claims, "outcome": "succeeded"}])
    ((b_id, b_claims),) = conn.execute(call, (W, done, ["default"], 10)).fetchall()
    row = conn.execute(
        "SELECT b.step_id, b.started_at = a.completed_at FROM pgdag.jobs AS b, pgdag.jobs AS a "
        "WHERE b.id = %s AND a.id = %s",
        (b_id, a_id),
    ).fetchone()
    assert row == ("b", True), "b was claimed in the transaction that completed a"
    assert steps(conn, wid)["b"] == ("running", True, 0)
    # p_limit 0 records the outcome and claims nothing (a process that is stopping)
    done = json.dumps([{"id": str(b_id), "claims": b_claims, "outcome": "succeeded"}])
    assert conn.execute(call, (W, done, ["default"], 0)).fetchall() == []
    assert steps(conn, wid)["b"][0] == "succeeded"
    assert steps(conn, wid)["c"] == ("pending", True, 0)


def test_a_completion_that_finds_its_workflow_locked_announces_it(clean_db: str) -> None:
    """complete_jobs skips a workflow another caller holds (SKIP LOCKED) and
    notifies <schema>.workflows, so that a worker process advances it once the
    completion is visible."""
    with (
        psycopg.connect(clean_db, autocommit=True) as conn,
        psycopg.connect(clean_db, autocommit=True) as holder,
        psycopg.connect(clean_db, autocommit=True) as listener,
    ):
        wid = push(conn, DIAMOND)
        claimed = claim(conn)
        listener.execute('LISTEN "pgdag.workflows"')
        with holder.transaction():
            holder.execute("SELECT 1 FROM pgdag.workflows WHERE id = %s FOR UPDATE", (wid,))
            complete(conn, claimed, advance_now=True)
        heard = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
        assert heard == ["pgdag.workflows"]
        assert steps(conn, wid)["left"] == ("pending", False, 1), "not advanced while locked"
        assert waiting_events(conn) == 1, "the finished step waits in workflow_events"
        assert advance(conn)[0] == 1
        assert steps(conn, wid)["left"] == ("pending", True, 0)
        assert waiting_events(conn) == 0


def test_a_terminal_failure_fails_the_workflow_and_starts_nothing_more(
    conn: psycopg.Connection,
) -> None:
    wid = push(conn, DIAMOND)
    complete(conn, claim(conn))
    advance(conn)
    middle = claim(conn)
    complete(conn, middle, left="failed")
    advance(conn)
    assert workflow(conn, wid)[0] == "failed"
    assert steps(conn, wid)["left"][0] == "failed"
    assert steps(conn, wid)["right"][0] == "succeeded"
    assert steps(conn, wid)["bottom"] == ("pending", False, 1)
    assert claim(conn) == {}


def test_a_step_made_ready_in_the_batch_that_fails_its_workflow_gets_no_job(
    conn: psycopg.Connection,
) -> None:
    """'c' loses its last dependency in the same advancement that sees 'b' fail:
    it is neither linked to a job nor enqueued."""
    wid = push(conn, [("a", []), ("b", []), ("c", ["a"])])
    complete(conn, claim(conn), b="failed")
    advance(conn)
    assert workflow(conn, wid)[0] == "failed"
    assert steps(conn, wid)["c"] == ("pending", False, 0)
    assert claim(conn) == {}


def test_a_non_root_step_blocked_by_a_unique_key_waits_unlinked(
    conn: psycopg.Connection,
) -> None:
    holder = str(uuid.uuid4())
    conn.execute(
        "SELECT * FROM pgdag.push_jobs(%s::jsonb)",
        (json.dumps([{"id": holder, "func": "m.other", "unique_key": "k", "queue": "other"}]),),
    )
    wid = str(uuid.uuid4())
    payload = {
        "id": wid,
        "name": "wf",
        "steps": [
            {"step_id": "a", "job": job_def(), "dependencies": []},
            {"step_id": "b", "job": job_def(unique_key="k"), "dependencies": ["a"]},
        ],
    }
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (json.dumps([payload]),))
    complete(conn, claim(conn), advance_now=True)
    assert steps(conn, wid)["b"] == ("pending", False, 0), "not linked to the holder's key"
    conn.execute("SELECT pgdag.cancel_job(%s)", (holder,))
    conn.execute("UPDATE pgdag.workflow_events SET available_at = now()")
    assert advance(conn)[2] == 1
    assert steps(conn, wid)["b"] == ("pending", True, 0)
    assert set(claim(conn)) == {"b"}


def test_a_retried_step_keeps_the_workflow_running(conn: psycopg.Connection) -> None:
    wid = push(conn, [("only", [])], max_attempts=2, retry={"backoff": 0, "jitter": 0})
    complete(conn, claim(conn), only="failed")
    assert steps(conn, wid)["only"][0] == "retrying"
    assert advance(conn) == (0, 0, 0), "a retry is not an event"
    assert workflow(conn, wid)[0] == "running"
    complete(conn, claim(conn))
    advance(conn)
    assert workflow(conn, wid) == ("completed", 1, 1)


def test_a_cancelled_step_fails_the_workflow(conn: psycopg.Connection) -> None:
    wid = push(conn, [("a", []), ("b", ["a"])])
    job_id = conn.execute(
        "SELECT job_id FROM pgdag.workflow_steps WHERE workflow_id = %s AND step_id = 'a'", (wid,)
    ).fetchone()
    assert job_id is not None
    conn.execute("SELECT pgdag.cancel_job(%s)", (job_id[0],))
    advance(conn)
    assert workflow(conn, wid)[0] == "failed"
    assert steps(conn, wid)["a"][0] == "cancelled"


def test_wide_fan_in_is_counted_in_one_advancement(conn: psycopg.Connection) -> None:
    middle = [(f"m{i}", ["root"]) for i in range(300)]
    wid = push(conn, [("root", []), *middle, ("join", [m for m, _ in middle])])
    complete(conn, claim(conn))
    advance(conn)
    claimed = claim(conn, limit=1000)
    assert len(claimed) == 300
    complete(conn, claimed)
    assert advance(conn) == (1, 0, 1)
    assert steps(conn, wid)["join"] == ("pending", True, 0)


def test_empty_workflow_completes_at_once(conn: psycopg.Connection) -> None:
    wid = push(conn, [])
    assert workflow(conn, wid) == ("completed", 0, 0)


def test_unknown_dependency_is_refused_by_the_database_too(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="depends on unknown step zz"):
        push(conn, [("a", ["zz"])])
    assert conn.execute("SELECT count(*) FROM pgdag.workflows").fetchone() == (0,)
    # in a batch, after a good workflow; and in a re-push of a workflow that exists
    good = {"id": str(uuid.uuid4()), "name": "good", "steps": [step("a", [])]}
    bad = {"id": str(uuid.uuid4()), "name": "bad", "steps": [step("a", []), step("b", ["c"])]}
    call = "SELECT pgdag.push_workflows(%s::jsonb)"
    with pytest.raises(
        psycopg.errors.ForeignKeyViolation, match="workflow bad: a step depends on unknown step c"
    ):
        conn.execute(call, (json.dumps([good, bad]),))
    assert conn.execute("SELECT count(*) FROM pgdag.workflow_steps").fetchone() == (0,)
    conn.execute(call, (json.dumps([good]),))
    good["steps"].append(step("b", ["x"]))
    with pytest.raises(
        psycopg.errors.ForeignKeyViolation, match="workflow good: a step depends on unknown step x"
    ):
        conn.execute(call, (json.dumps([good]),))
    assert conn.execute("SELECT count(*) FROM pgdag.workflow_steps").fetchone() == (1,)


def test_repush_adds_steps_and_never_reruns_those_with_jobs(conn: psycopg.Connection) -> None:
    wid = push(conn, [("a", [])])
    complete(conn, claim(conn))
    advance(conn)
    assert workflow(conn, wid)[0] == "completed"
    payload = {
        "id": wid,
        "name": "wf",
        "steps": [
            {"step_id": "a", "job": job_def(), "dependencies": []},
            {"step_id": "b", "job": job_def(), "dependencies": ["a"]},
        ],
    }
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (json.dumps([payload]),))
    assert steps(conn, wid) == {"a": ("succeeded", True, 0), "b": ("pending", True, 0)}
    assert workflow(conn, wid)[0] == "running"
    assert set(claim(conn)) == {"b"}
    assert conn.execute("SELECT count(*) FROM pgdag.jobs").fetchone() == (2,)


def test_pruned_job_rows_do_not_strand_the_workflow(conn: psycopg.Connection) -> None:
    wid = push(conn, [("a", []), ("b", ["a"])])
    complete(conn, claim(conn))
    conn.execute("DELETE FROM pgdag.jobs WHERE state = 'succeeded'")
    advance(conn)
    complete(conn, claim(conn))
    advance(conn)
    assert workflow(conn, wid) == ("completed", 2, 2)


def test_unique_key_never_makes_a_step_adopt_an_unrelated_job(conn: psycopg.Connection) -> None:
    holder = str(uuid.uuid4())
    conn.execute(
        "SELECT * FROM pgdag.push_jobs(%s::jsonb)",
        (json.dumps([{"id": holder, "func": "m.other", "unique_key": "k"}]),),
    )
    wid = push(conn, [("a", [])], unique_key="k")
    assert steps(conn, wid)["a"] == ("pending", False, 0), "not linked to the holder"
    conn.execute("SELECT pgdag.cancel_job(%s)", (holder,))
    # the workflow is looked at again a second later
    conn.execute("UPDATE pgdag.workflow_events SET available_at = now()")
    assert advance(conn)[2] == 1
    job = conn.execute(
        "SELECT j.func, j.unique_key FROM pgdag.jobs j JOIN pgdag.workflow_steps s "
        "ON s.job_id = j.id WHERE s.workflow_id = %s",
        (wid,),
    ).fetchone()
    assert job == ("m.f", "k")


def test_many_connections_advancing_at_once_enqueue_each_step_once(
    conn: psycopg.Connection, clean_db: str
) -> None:
    ids = [push(conn, DIAMOND) for _ in range(200)]
    tops = conn.execute(
        "SELECT id, claims FROM pgdag.claim_jobs(%s, %s, 1000, 60)", (W, ["default"])
    ).fetchall()
    assert len(tops) == 200
    batch = [{"id": str(i), "claims": c, "outcome": "succeeded"} for i, c in tops]
    conn.execute(  # events only: the threads below do the advancing
        "SELECT * FROM pgdag.complete_jobs(%s, %s::jsonb, p_workflow_batch => 0)",
        (W, json.dumps(batch)),
    )
    errors: list[BaseException] = []

    def advance_until_idle() -> None:
        try:
            with psycopg.connect(clean_db, autocommit=True) as own:
                while True:
                    advanced, skipped, _ = advance(own, limit=7)
                    if not advanced and not skipped:
                        return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=advance_until_idle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    rows = conn.execute(
        "SELECT step_id, count(*) FROM pgdag.jobs WHERE workflow_id = ANY(%s) GROUP BY step_id",
        (ids,),
    ).fetchall()
    assert dict(rows) == {"top": 200, "left": 200, "right": 200}


def test_python_payload_pushes(conn: psycopg.Connection) -> None:
    flow = Workflow("py").add("x", wj.ok).add("y", wj.ok, ["x"])
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (f"[{flow._payload()}]",))
    assert steps(conn, flow.id) == {"x": ("pending", True, 0), "y": ("pending", False, 1)}
