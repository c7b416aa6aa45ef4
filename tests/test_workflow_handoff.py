"""Hand-off: complete_and_claim_jobs creates the steps its completions make ready
already claimed by the completing worker, only where claim_jobs would take them
next (real PostgreSQL, no worker processes)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from worker.queries import STEP_STARTED, STEP_STATE

W = "w1"


@pytest.fixture
def conn(clean_db: str) -> psycopg.Connection:
    with psycopg.connect(clean_db, autocommit=True) as connection:
        yield connection


def push(conn: psycopg.Connection, steps: list[tuple[str, list[str], dict[str, Any]]]) -> str:
    wid = str(uuid.uuid4())
    payload = {
        "id": wid,
        "name": "wf",
        "steps": [
            {"step_id": s, "job": {"func": "m.f", **job}, "dependencies": deps}
            for s, deps, job in steps
        ],
    }
    conn.execute("SELECT pgdag.push_workflows(%s::jsonb)", (json.dumps([payload]),))
    return wid


def push_job(conn: psycopg.Connection, **job: Any) -> str:
    job_id = str(uuid.uuid4())
    conn.execute(
        "SELECT * FROM pgdag.push_jobs(%s::jsonb)",
        (json.dumps([{"id": job_id, "func": "m.other", **job}]),),
    )
    return job_id


def claim_root(conn: psycopg.Connection, wid: str) -> tuple[str, int]:
    """Claim the workflow's root step (its job only: other waiting jobs stay)."""
    row = conn.execute(
        "UPDATE pgdag.jobs SET state = 'running', attempts = 1, claims = 1, worker_id = %s, "
        "started_at = now(), lease_expires_at = now() + interval '1 minute' "
        "WHERE workflow_id = %s AND state = 'pending' RETURNING id, claims",
        (W, wid),
    ).fetchone()
    assert row is not None
    return str(row[0]), row[1]


def complete_and_claim(
    conn: psycopg.Connection, done: tuple[str, int], limit: int, queues: list[str] | None = None
) -> list[str]:
    """The ids complete_and_claim_jobs returns (handed off, then claimed)."""
    outcome = json.dumps([{"id": done[0], "claims": done[1], "outcome": "succeeded"}])
    rows = conn.execute(
        "SELECT id FROM pgdag.complete_and_claim_jobs(%s, %s::jsonb, %s, %s, 60)",
        (W, outcome, queues or ["default"], limit),
    ).fetchall()
    return [str(r[0]) for r in rows]


def step_job(conn: psycopg.Connection, wid: str, step: str) -> tuple[Any, ...]:
    row = conn.execute(
        f"SELECT j.id::text, j.state, {STEP_STATE}, j.worker_id, j.attempts, j.claims, "
        f"j.lease_expires_at IS NOT NULL, {STEP_STARTED} IS NOT NULL "
        "FROM pgdag.workflow_steps AS s JOIN pgdag.jobs AS j ON j.id = s.job_id "
        "WHERE s.workflow_id = %s AND s.step_id = %s",
        (wid, step),
    ).fetchone()
    assert row is not None, f"step {step} has no job"
    return row


def test_the_next_step_is_created_claimed_by_the_completing_worker(
    conn: psycopg.Connection,
) -> None:
    wid = push(conn, [("a", [], {}), ("b", ["a"], {})])
    claimed = complete_and_claim(conn, claim_root(conn, wid), limit=5)
    b = step_job(conn, wid, "b")
    assert claimed == [b[0]]
    assert b[1:] == ("running", "running", W, 1, 1, True, True), "as claim_jobs leaves it"
    pending = conn.execute("SELECT count(*) FROM pgdag.jobs WHERE state = 'pending'").fetchone()
    assert pending == (0,)


def test_a_due_job_waiting_at_the_same_priority_goes_first(conn: psycopg.Connection) -> None:
    wid = push(conn, [("a", [], {}), ("b", ["a"], {})])
    root = claim_root(conn, wid)
    waiting = push_job(conn)
    assert complete_and_claim(conn, root, limit=1) == [waiting], "claim order kept"
    assert step_job(conn, wid, "b")[1:3] == ("pending", "pending")


def test_jobs_already_waiting_are_claimed_first_and_the_step_takes_the_slots_left(
    conn: psycopg.Connection,
) -> None:
    """The call claims the jobs that wait (whatever their priority) before its
    completions make steps ready; a step is handed off only to the slots left.
    (A step of a better priority than the waiting jobs it was not handed off
    for waits for the next claim, a few milliseconds.)"""
    wid = push(conn, [("a", [], {}), ("b", ["a"], {"priority": 5})])
    root = claim_root(conn, wid)
    low = push_job(conn, priority=1)
    assert complete_and_claim(conn, root, limit=2) == [low, step_job(conn, wid, "b")[0]]


def test_a_waiting_job_of_a_higher_priority_goes_first(conn: psycopg.Connection) -> None:
    wid = push(conn, [("a", [], {}), ("b", ["a"], {})])
    root = claim_root(conn, wid)
    urgent = push_job(conn, priority=9)
    assert complete_and_claim(conn, root, limit=1) == [urgent]
    assert step_job(conn, wid, "b")[1] == "pending"


def test_only_due_steps_of_the_workers_queues_are_handed_off(conn: psycopg.Connection) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    wid = push(
        conn,
        [
            ("a", [], {}),
            ("elsewhere", ["a"], {"queue": "other"}),
            ("later", ["a"], {"scheduled_at": later}),
            ("here", ["a"], {}),
        ],
    )
    claimed = complete_and_claim(conn, claim_root(conn, wid), limit=10)
    assert claimed == [step_job(conn, wid, "here")[0]]
    assert step_job(conn, wid, "elsewhere")[1] == "pending"
    assert step_job(conn, wid, "later")[1] == "pending"


def test_no_more_steps_are_handed_off_than_the_worker_has_free_slots(
    conn: psycopg.Connection,
) -> None:
    wid = push(conn, [("a", [], {}), ("b", ["a"], {}), ("c", ["a"], {}), ("d", ["a"], {})])
    claimed = complete_and_claim(conn, claim_root(conn, wid), limit=2)
    jobs = {s: step_job(conn, wid, s) for s in "bcd"}
    assert sorted(claimed) == sorted(j[0] for j in jobs.values() if j[1] == "running")
    (left,) = [j[0] for j in jobs.values() if j[1] == "pending"]
    rest = conn.execute("SELECT id::text FROM pgdag.claim_jobs(%s, ARRAY['default'], 5, 60)", (W,))
    assert rest.fetchall() == [(left,)], "the third waits for a claim"
