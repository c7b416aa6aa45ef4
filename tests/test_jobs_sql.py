"""The job state machine of plpgsql/jobs/, called directly in SQL.

Every test runs against the real PostgreSQL of the harness (``clean_db``: an
emptied ``pgdag`` schema). Time is made exact with the functions' ``p_now``
parameter and retry jitter is 0 unless a test says otherwise, so backoffs are
checked to the microsecond; nothing sleeps.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import harness
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

S = sql.Identifier(harness.SCHEMA)
JOBS_CHANNEL = f"{harness.SCHEMA}.jobs"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0
FINAL_STATES = ("succeeded", "failed", "cancelled")


def q(text: str) -> sql.Composed:
    return sql.SQL(text).format(s=S)


# --- the API, one helper per function ------------------------------------------------


def spec(**fields: Any) -> dict[str, Any]:
    """One job for push_jobs: a fresh id, a func, jitter 0 unless given."""
    job: dict[str, Any] = {"id": str(uuid.uuid4()), "func": "tests.sample", "retry_jitter": 0}
    for key, value in fields.items():
        job[key] = value.isoformat() if isinstance(value, datetime) else value
    return job


def push(
    conn: psycopg.Connection, *jobs: dict[str, Any], now: datetime = T0
) -> list[tuple[int, UUID]]:
    return conn.execute(
        q("SELECT * FROM {s}.push_jobs(%s::jsonb, %s)"),
        (json.dumps([packed(job) for job in jobs]), now),
    ).fetchall()


def packed(job: dict[str, Any]) -> dict[str, Any]:
    """The tests name a job's fields after the jobs columns (timeout_seconds,
    retry_backoff, ...); push_jobs takes them as Job.pack() writes them."""
    out = {k: v for k, v in job.items() if k != "timeout_seconds" and not k.startswith("retry_")}
    if "timeout_seconds" in job:
        out["timeout"] = job["timeout_seconds"]
    retry = {k.removeprefix("retry_"): v for k, v in job.items() if k.startswith("retry_")}
    if retry:
        out["retry"] = retry
    return out


def push_one(conn: psycopg.Connection, now: datetime = T0, **fields: Any) -> UUID:
    job = spec(**fields)
    assert push(conn, job, now=now) == []
    return UUID(job["id"])


def claim(
    conn: psycopg.Connection,
    worker: str = "w1",
    queues: tuple[str, ...] = ("default",),
    limit: int = 10,
    lease: float = LEASE,
    now: datetime = T0,
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            q(
                "SELECT id, claims, func, kwargs, timeout_seconds, attempts, max_attempts "
                "FROM {s}.claim_jobs(%s, %s, %s, %s, %s)"
            ),
            (worker, list(queues), limit, lease, now),
        )
        return cur.fetchall()


def claim_one(conn: psycopg.Connection, worker: str = "w1", now: datetime = T0) -> dict[str, Any]:
    claimed = claim(conn, worker, limit=1, now=now)
    assert len(claimed) == 1
    return claimed[0]


def outcome(
    job_id: UUID, claims: int, kind: str, result: Any = None, error: Any = None
) -> dict[str, Any]:
    return {
        "id": str(job_id),
        "claims": claims,
        "outcome": kind,
        "result": result,
        "error": error,
    }


def complete(
    conn: psycopg.Connection, worker: str, *outcomes: dict[str, Any], now: datetime = T0
) -> dict[UUID, str]:
    rows = conn.execute(
        q("SELECT id, state FROM {s}.complete_jobs(%s, %s::jsonb, %s)"),
        (worker, json.dumps(list(outcomes)), now),
    ).fetchall()
    changed = dict(rows)
    assert len(changed) == len(rows), "a job is reported once"
    return changed


def extend(
    conn: psycopg.Connection,
    worker: str,
    ids: list[UUID],
    lease: float = LEASE,
    now: datetime = T0,
) -> list[UUID | None]:
    rows = conn.execute(
        q("SELECT id FROM {s}.extend_leases(%s, %s, %s, %s)"), (worker, ids, lease, now)
    ).fetchall()
    return [row[0] for row in rows]


def recover(
    conn: psycopg.Connection, worker: str | None = None, limit: int = 1000, now: datetime = T0
) -> dict[UUID, str]:
    rows = conn.execute(
        q("SELECT id, state FROM {s}.recover_jobs(%s, %s, %s)"), (worker, limit, now)
    ).fetchall()
    return dict(rows)


def cancel(conn: psycopg.Connection, job_id: UUID, now: datetime = T0) -> str | None:
    row = conn.execute(q("SELECT {s}.cancel_job(%s, %s)"), (job_id, now)).fetchone()
    assert row is not None
    return row[0]


def get(conn: psycopg.Connection, job_id: UUID) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q("SELECT * FROM {s}.jobs WHERE id = %s"), (job_id,))
        row = cur.fetchone()
    assert row is not None, f"no job {job_id}"
    return row


def all_jobs(conn: psycopg.Connection) -> dict[UUID, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q("SELECT * FROM {s}.jobs"))
        return {row["id"]: row for row in cur.fetchall()}


def set_columns(conn: psycopg.Connection, job_id: UUID, **values: Any) -> None:
    """Put a job in a state the API reaches only after many steps (columns by name)."""
    conn.execute(
        sql.SQL("UPDATE {s}.jobs SET {assignments} WHERE id = {id}").format(
            s=S,
            assignments=sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v))
                for k, v in values.items()
            ),
            id=sql.Literal(job_id),
        )
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run_and_claim(
    conn: psycopg.Connection, worker: str = "w1", now: datetime = T0, **fields: Any
) -> dict[str, Any]:
    """Push one job and claim it: the claim row (id, claims, attempts...)."""
    job_id = push_one(conn, now=now, **fields)
    claimed = claim(conn, worker, (fields.get("queue", "default"),), limit=1, now=now)
    assert [c["id"] for c in claimed] == [job_id]
    return claimed[0]


def wait_until_blocked(watcher: psycopg.Connection, pid: int) -> None:
    """Wait until backend ``pid`` waits for a lock another backend holds."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = watcher.execute("SELECT cardinality(pg_blocking_pids(%s))", (pid,)).fetchone()
        if row and row[0] > 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


@pytest.fixture
def conn(clean_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(clean_db, autocommit=True) as connection:
        yield connection


@pytest.fixture
def connect(clean_db: str) -> Iterator[Callable[[], psycopg.Connection]]:
    """More autocommit connections to the same database, closed afterwards."""
    opened: list[psycopg.Connection] = []

    def new() -> psycopg.Connection:
        connection = psycopg.connect(clean_db, autocommit=True)
        opened.append(connection)
        return connection

    yield new
    for connection in opened:
        connection.close()


# --- push ----------------------------------------------------------------------------


def test_push_stores_pending_jobs_with_defaults(conn: psycopg.Connection) -> None:
    job = {"id": str(uuid.uuid4()), "func": "tests.sample"}
    assert push(conn, job) == []
    stored = get(conn, UUID(job["id"]))
    assert stored["state"] == "pending"
    assert (stored["queue"], stored["priority"], stored["kwargs"], stored["meta"]) == (
        "default",
        0,
        {},
        {},
    )
    assert (stored["attempts"], stored["claims"], stored["max_attempts"]) == (0, 0, 1)
    assert (stored["retry_backoff"], stored["retry_factor"]) == (1, 2)
    assert (stored["retry_limit"], stored["retry_jitter"]) == (300, 0.1)
    assert stored["scheduled_at"] == stored["created_at"] == T0
    assert stored["started_at"] is None
    assert stored["completed_at"] is None
    assert stored["lease_expires_at"] is None
    assert stored["worker_id"] is None
    assert stored["errors"] == []
    assert stored["cancel_requested"] is False


def test_push_stores_every_given_column(conn: psycopg.Connection) -> None:
    job_id = push_one(
        conn,
        queue="q",
        kwargs={"x": [1, 2]},
        meta={"m": True},
        priority=-4,
        max_attempts=7,
        timeout_seconds=2.5,
        retry_backoff=3,
        retry_factor=1.5,
        retry_limit=60,
        retry_jitter=0.25,
        unique_key="k",
        scheduled_at=at(90),
    )
    stored = get(conn, job_id)
    assert {k: stored[k] for k in ("queue", "kwargs", "meta", "priority", "max_attempts")} == {
        "queue": "q",
        "kwargs": {"x": [1, 2]},
        "meta": {"m": True},
        "priority": -4,
        "max_attempts": 7,
    }
    assert stored["timeout_seconds"] == 2.5
    assert (stored["retry_backoff"], stored["retry_factor"]) == (3, 1.5)
    assert (stored["retry_limit"], stored["retry_jitter"]) == (60, 0.25)
    assert stored["unique_key"] == "k"
    assert stored["scheduled_at"] == at(90)
    assert stored["created_at"] == T0


def test_push_of_a_key_held_by_an_unfinished_job_returns_the_holder_and_writes_nothing(
    conn: psycopg.Connection,
) -> None:
    holder = push_one(conn, unique_key="k", kwargs={"v": 1})
    before = get(conn, holder)
    fresh = spec(unique_key="other")
    dup = spec(unique_key="k", kwargs={"v": 2}, priority=9)
    assert push(conn, fresh, dup) == [(2, holder)]
    jobs = all_jobs(conn)
    assert set(jobs) == {holder, UUID(fresh["id"])}, "the duplicate was not inserted"
    assert jobs[holder] == before, "the holder is unchanged"


@pytest.mark.parametrize("holder_state", ["running", "retrying"])
def test_push_dedupes_against_running_and_retrying_holders(
    conn: psycopg.Connection, holder_state: str
) -> None:
    claimed = run_and_claim(conn, unique_key="k", max_attempts=2)
    if holder_state == "retrying":
        complete(conn, "w1", outcome(claimed["id"], 1, "failed", error={"message": "x"}))
    assert get(conn, claimed["id"])["state"] == holder_state
    dup = spec(unique_key="k")
    assert push(conn, dup) == [(1, claimed["id"])]
    assert set(all_jobs(conn)) == {claimed["id"]}


def test_push_dedupes_duplicates_within_one_batch(conn: psycopg.Connection) -> None:
    first, plain, second, third = (
        spec(unique_key="k"),
        spec(),
        spec(unique_key="k"),
        spec(unique_key="k"),
    )
    first_id = UUID(first["id"])
    assert sorted(push(conn, first, plain, second, third)) == [(3, first_id), (4, first_id)]
    assert set(all_jobs(conn)) == {first_id, UUID(plain["id"])}


@pytest.mark.parametrize("final", FINAL_STATES)
def test_push_reuses_the_key_of_a_finished_job(conn: psycopg.Connection, final: str) -> None:
    claimed = run_and_claim(conn, unique_key="k")
    # max_attempts 1: each outcome named like a final state leads to that state
    assert complete(conn, "w1", outcome(claimed["id"], 1, final)) == {claimed["id"]: final}
    again = spec(unique_key="k")
    assert push(conn, again, now=at(5)) == []
    assert get(conn, UUID(again["id"]))["state"] == "pending"
    # from now on the new, unfinished job holds the key (not the finished one)
    assert push(conn, spec(unique_key="k"), now=at(6)) == [(1, UUID(again["id"]))]
    assert len(all_jobs(conn)) == 2


def test_push_sends_one_notification_per_queue_and_none_for_future_jobs(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    listener = connect()
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(JOBS_CHANNEL)))
    push(
        conn,
        spec(queue="a"),
        spec(queue="b"),
        spec(queue="a", scheduled_at=T0),  # due exactly now counts as due
        spec(queue="a"),
        spec(),  # no queue: "default"
        spec(queue="later", scheduled_at=at(1)),
    )
    push(conn, spec(queue="later", scheduled_at=at(60)))  # a push of future jobs only
    push(conn, spec(queue="end"))  # the marker: notifications arrive in commit order
    received = [(n.channel, n.payload) for n in listener.notifies(timeout=10, stop_after=4)]
    assert sorted(received[:3]) == [(JOBS_CHANNEL, q) for q in ("a", "b", "default")]
    assert received[3:] == [(JOBS_CHANNEL, "end")]


# --- claim ---------------------------------------------------------------------------


def test_claim_takes_priority_desc_then_scheduled_at_then_id(conn: psycopg.Connection) -> None:
    ids = sorted(uuid.uuid4() for _ in range(2))
    jobs = [
        spec(id=str(ids[1]), scheduled_at=at(-10)),  # 3rd: same time as the next, larger id
        spec(id=str(ids[0]), scheduled_at=at(-10)),  # 2nd: same time, smaller id
        spec(scheduled_at=at(-5)),  # 4th: due later
        spec(priority=5, scheduled_at=at(-1)),  # 1st: highest priority, though due last
        spec(priority=-1, scheduled_at=at(-100)),  # 5th: lowest priority, though due first
    ]
    push(conn, *jobs)
    order = [claim_one(conn)["id"] for _ in jobs]
    assert order == [UUID(jobs[i]["id"]) for i in (3, 1, 0, 2, 4)]
    assert claim(conn) == []


def test_one_claim_spans_priorities_and_queues_in_order(conn: psycopg.Connection) -> None:
    """claim_jobs reads priority by priority: a higher priority that has only jobs
    due later does not hide the due ones below it, and one call fills its limit
    from several priorities (the extremes of integer included) and queues."""
    top, bottom = 2_147_483_647, -2_147_483_648
    later = push_one(conn, priority=top, scheduled_at=at(60))
    jobs = [
        spec(queue="a", priority=top, scheduled_at=at(-1)),
        spec(queue="b", priority=7, scheduled_at=at(-3)),
        spec(queue="a", priority=7, scheduled_at=at(-2)),
        spec(queue="b", priority=bottom, scheduled_at=at(-9)),
    ]
    push(conn, *jobs)
    ids = [UUID(job["id"]) for job in jobs]
    first = {c["id"] for c in claim(conn, queues=("a", "b", "default"), limit=2)}
    assert first == {ids[0], ids[1]}  # the top priority, then the first due of 7
    rest = {c["id"] for c in claim(conn, queues=("a", "b", "default"), limit=10)}
    assert rest == {ids[2], ids[3]}
    assert get(conn, later)["state"] == "pending"
    assert [c["id"] for c in claim(conn, now=at(60))] == [later]


def test_claim_takes_only_jobs_due_at_p_now(conn: psycopg.Connection) -> None:
    due = push_one(conn, scheduled_at=at(10))
    later = push_one(conn, scheduled_at=at(10.000001))
    assert claim(conn, now=at(9.999999)) == []
    assert [c["id"] for c in claim(conn, now=at(10))] == [due]
    assert get(conn, later)["state"] == "pending"


def test_claim_takes_only_the_given_queues(conn: psycopg.Connection) -> None:
    a = push_one(conn, queue="a")
    b = push_one(conn, queue="b")
    c = push_one(conn, queue="c")
    assert {x["id"] for x in claim(conn, queues=("a", "c"))} == {a, c}
    assert get(conn, b)["state"] == "pending"
    assert claim(conn, queues=("nope",)) == []
    assert [x["id"] for x in claim(conn, queues=("b",))] == [b]


def test_claim_takes_at_most_p_limit(conn: psycopg.Connection) -> None:
    push(conn, *(spec() for _ in range(5)))
    assert len(claim(conn, limit=3)) == 3
    assert len(claim(conn, limit=3)) == 2
    assert claim(conn, limit=3) == []


def test_claim_records_the_claim_and_returns_the_job(conn: psycopg.Connection) -> None:
    job_id = push_one(conn, kwargs={"x": 1}, timeout_seconds=4.5, max_attempts=3)
    claimed = claim(conn, "w-7", lease=12.5, now=at(3))
    assert claimed == [
        {
            "id": job_id,
            "claims": 1,
            "func": "tests.sample",
            "kwargs": {"x": 1},
            "timeout_seconds": 4.5,
            "attempts": 1,
            "max_attempts": 3,
        }
    ]
    stored = get(conn, job_id)
    assert stored["state"] == "running"
    assert stored["worker_id"] == "w-7"
    assert stored["started_at"] == at(3)
    assert stored["lease_expires_at"] == at(15.5)
    assert (stored["attempts"], stored["claims"]) == (1, 1)
    assert stored["completed_at"] is None


def test_claim_of_a_retrying_job_counts_the_next_attempt(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, max_attempts=3, retry_backoff=10)
    complete(conn, "w1", outcome(claimed["id"], 1, "failed"), now=at(1))
    assert claim(conn, "w2", now=at(10.999999)) == []
    again = claim(conn, "w2", now=at(11))
    assert [(c["id"], c["attempts"], c["claims"]) for c in again] == [(claimed["id"], 2, 2)]
    stored = get(conn, claimed["id"])
    assert (stored["worker_id"], stored["started_at"]) == ("w2", at(11))


def test_claim_skips_running_and_finished_jobs(conn: psycopg.Connection) -> None:
    running = run_and_claim(conn)["id"]
    done = run_and_claim(conn)["id"]
    complete(conn, "w1", outcome(done, 1, "succeeded"))
    assert claim(conn, now=at(1000)) == []
    assert get(conn, running)["claims"] == 1


def test_concurrent_claimers_never_get_the_same_job(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    jobs = [spec(), spec(), spec()]
    ids = {UUID(j["id"]) for j in jobs}
    push(conn, *jobs)
    holder = connect()
    holder.execute("BEGIN")
    first = claim(holder, "w1", limit=1)
    # the holder's claim is not committed: w2 sees the row still pending, and skips it
    # instead of waiting for the lock or claiming it again
    second = claim(conn, "w2", limit=10)
    holder.execute("COMMIT")
    assert len(first) == 1
    assert len(second) == 2
    assert {c["id"] for c in first} | {c["id"] for c in second} == ids
    assert claim(conn, "w3") == []
    stored = all_jobs(conn)
    assert {i: (j["worker_id"], j["claims"]) for i, j in stored.items()} == {
        **{c["id"]: ("w2", 1) for c in second},
        first[0]["id"]: ("w1", 1),
    }


def test_many_concurrent_claimers_claim_every_job_exactly_once(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    jobs = [spec() for _ in range(60)]
    push(conn, *jobs)
    claimers = [connect() for _ in range(4)]
    start = threading.Barrier(len(claimers))

    def drain(index: int) -> list[UUID]:
        start.wait()
        got: list[UUID] = []
        while batch := claim(claimers[index], f"w{index}", limit=2):
            got.extend(c["id"] for c in batch)
        return got

    with ThreadPoolExecutor(len(claimers)) as pool:
        results = list(pool.map(drain, range(len(claimers))))
    flat = [i for r in results for i in r]
    assert sorted(flat) == sorted(UUID(j["id"]) for j in jobs), "each job exactly once"
    stored = all_jobs(conn)
    assert {j["claims"] for j in stored.values()} == {1}
    for index, got in enumerate(results):
        assert {stored[i]["worker_id"] for i in got} <= {f"w{index}"}


# --- complete: succeeded, stale, duplicate -------------------------------------------


def test_succeeded_stores_the_result_and_ends_the_lease(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, max_attempts=3)
    changed = complete(
        conn, "w1", outcome(claimed["id"], 1, "succeeded", result={"n": [1, "x"]}), now=at(4)
    )
    assert changed == {claimed["id"]: "succeeded"}
    stored = get(conn, claimed["id"])
    assert stored["state"] == "succeeded"
    assert stored["result"] == {"n": [1, "x"]}
    assert stored["completed_at"] == at(4)
    assert stored["lease_expires_at"] is None
    assert stored["worker_id"] == "w1", "the owner stays, as history"
    assert (stored["attempts"], stored["claims"]) == (1, 1)
    assert stored["errors"] == []


def test_complete_applies_a_batch_of_outcomes(conn: psycopg.Connection) -> None:
    a = run_and_claim(conn, max_attempts=2)["id"]
    b = run_and_claim(conn, max_attempts=2)["id"]
    c = run_and_claim(conn)["id"]
    changed = complete(
        conn,
        "w1",
        outcome(a, 1, "succeeded", result=1),
        outcome(b, 1, "failed"),
        outcome(c, 1, "released"),
    )
    assert changed == {a: "succeeded", b: "retrying", c: "pending"}


def test_stale_completion_with_an_older_claims_count_changes_nothing(
    conn: psycopg.Connection,
) -> None:
    claimed = run_and_claim(conn, max_attempts=3)
    # w1 was lost; its job was recovered and claimed again by the same worker id
    recover(conn, "w1")
    assert claim_one(conn, "w1", now=at(1))["claims"] == 2
    before = get(conn, claimed["id"])
    assert complete(conn, "w1", outcome(claimed["id"], 1, "succeeded", result=1)) == {}
    assert get(conn, claimed["id"]) == before


def test_completion_by_another_worker_changes_nothing(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, "w1")
    before = get(conn, claimed["id"])
    for kind in ("succeeded", "failed", "timeout", "cancelled", "released"):
        assert complete(conn, "w2", outcome(claimed["id"], 1, kind)) == {}
    assert get(conn, claimed["id"]) == before


def test_duplicate_completion_changes_nothing(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, max_attempts=3)
    complete(conn, "w1", outcome(claimed["id"], 1, "succeeded", result="first"), now=at(1))
    before = get(conn, claimed["id"])
    for kind in ("succeeded", "failed", "released"):
        late = outcome(claimed["id"], 1, kind, result="second", error={"message": "late"})
        assert complete(conn, "w1", late, now=at(2)) == {}
    assert get(conn, claimed["id"]) == before


def test_late_completion_after_cancel_changes_nothing(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn)
    assert cancel(conn, claimed["id"], now=at(1)) == "running"
    assert complete(conn, "w1", outcome(claimed["id"], 1, "cancelled"), now=at(2)) == {
        claimed["id"]: "cancelled"
    }
    before = get(conn, claimed["id"])
    late = outcome(claimed["id"], 1, "succeeded", result=1)
    assert complete(conn, "w1", late, now=at(3)) == {}
    assert get(conn, claimed["id"]) == before


def test_completion_of_a_job_that_is_not_running_changes_nothing(
    conn: psycopg.Connection,
) -> None:
    job_id = push_one(conn)
    before = get(conn, job_id)
    assert complete(conn, "w1", outcome(job_id, 0, "succeeded", result=1)) == {}
    assert complete(conn, "w1", outcome(uuid.uuid4(), 1, "succeeded")) == {}
    assert get(conn, job_id) == before


def test_unknown_outcome_changes_nothing(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn)
    before = get(conn, claimed["id"])
    assert complete(conn, "w1", outcome(claimed["id"], 1, "exploded")) == {}
    assert get(conn, claimed["id"]) == before


def test_completion_racing_a_recovery_and_new_claim_changes_nothing(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    """The stale completion starts while the job still runs under its claim, then
    waits for the row lock of a transaction that recovers and claims it again: once
    that commits, the completion must see the new claim and leave it alone."""
    claimed = run_and_claim(conn, max_attempts=3)
    other, completer = connect(), connect()
    other.execute("BEGIN")
    assert recover(other, "w1", now=at(1)) == {claimed["id"]: "pending"}
    assert claim_one(other, "w2", now=at(1))["claims"] == 2
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(
            complete, completer, "w1", outcome(claimed["id"], 1, "succeeded", result=1)
        )
        wait_until_blocked(conn, completer.info.backend_pid)
        other.execute("COMMIT")
        assert late.result(timeout=10) == {}
    stored = get(conn, claimed["id"])
    assert (stored["state"], stored["worker_id"], stored["claims"]) == ("running", "w2", 2)
    assert stored["result"] is None


def test_failure_racing_a_cancel_request_yields_cancelled(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    """A failure reported while cancel_job holds the row: once the cancel commits,
    the failure must see cancel_requested and cancel the job instead of retrying it."""
    claimed = run_and_claim(conn, max_attempts=3)
    canceller, completer = connect(), connect()
    canceller.execute("BEGIN")
    assert cancel(canceller, claimed["id"], now=at(1)) == "running"
    with ThreadPoolExecutor(1) as pool:
        failed = pool.submit(
            complete, completer, "w1", outcome(claimed["id"], 1, "failed"), now=at(2)
        )
        wait_until_blocked(conn, completer.info.backend_pid)
        canceller.execute("COMMIT")
        assert failed.result(timeout=10) == {claimed["id"]: "cancelled"}
    assert get(conn, claimed["id"])["state"] == "cancelled"


# --- complete: failed, timeout, retries ----------------------------------------------


@pytest.mark.parametrize("kind", ["failed", "timeout"])
def test_failure_with_attempts_left_retries_with_exponential_backoff(
    conn: psycopg.Connection, kind: str
) -> None:
    claimed = run_and_claim(conn, max_attempts=5, retry_backoff=2, retry_factor=3, retry_limit=40)
    job_id = claimed["id"]
    now = T0
    # delays after attempts 1, 2, 3, 4: 2 * 3^0, 2 * 3^1, 2 * 3^2, min(40, 2 * 3^3)
    for attempt, delay in enumerate([2, 6, 18, 40], start=1):
        error = {"type": "ValueError", "message": f"boom {attempt}"}
        changed = complete(conn, "w1", outcome(job_id, attempt, kind, error=error), now=now)
        assert changed == {job_id: "retrying"}
        stored = get(conn, job_id)
        assert stored["state"] == "retrying"
        assert stored["scheduled_at"] == now + timedelta(seconds=delay)
        assert stored["lease_expires_at"] is None
        assert stored["completed_at"] is None
        assert stored["result"] is None
        assert (stored["attempts"], stored["claims"]) == (attempt, attempt)
        assert len(stored["errors"]) == attempt
        last = stored["errors"][-1]
        assert datetime.fromisoformat(last.pop("at")) == now
        assert last == {**error, "attempt": attempt, "outcome": kind}
        now = stored["scheduled_at"]
        assert claim_one(conn, "w1", now=now)["attempts"] == attempt + 1


@pytest.mark.parametrize("kind", ["failed", "timeout"])
def test_failure_on_the_last_attempt_fails_the_job(conn: psycopg.Connection, kind: str) -> None:
    claimed = run_and_claim(conn, max_attempts=2, retry_backoff=5)
    job_id = claimed["id"]
    complete(conn, "w1", outcome(job_id, 1, kind, error={"message": "one"}), now=at(1))
    assert claim_one(conn, "w1", now=at(6))["attempts"] == 2
    changed = complete(conn, "w1", outcome(job_id, 2, kind, error={"message": "two"}), now=at(7))
    assert changed == {job_id: "failed"}
    stored = get(conn, job_id)
    assert stored["state"] == "failed"
    assert stored["completed_at"] == at(7)
    assert stored["scheduled_at"] == at(6), "a failed job is not rescheduled"
    assert stored["lease_expires_at"] is None
    assert stored["result"] is None
    assert [(e["message"], e["attempt"], e["outcome"]) for e in stored["errors"]] == [
        ("one", 1, kind),
        ("two", 2, kind),
    ]
    assert claim(conn, now=at(1000)) == []


def test_failure_of_a_single_attempt_job_fails_it_at_once(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn)
    assert complete(conn, "w1", outcome(claimed["id"], 1, "failed")) == {claimed["id"]: "failed"}
    assert get(conn, claimed["id"])["errors"] == [], "no error given, none recorded"


def test_succeeded_discards_a_result_of_other_outcomes(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, max_attempts=2)
    complete(conn, "w1", outcome(claimed["id"], 1, "failed", result={"partial": 1}))
    assert get(conn, claimed["id"])["result"] is None


def test_retry_backoff_is_capped_by_the_limit_even_after_very_many_attempts(
    conn: psycopg.Connection,
) -> None:
    """factor^(attempt-1) overflows a double long before attempts run out for a job
    that retries "forever"; the delay is still the limit."""
    job_id = push_one(conn, max_attempts=1_000_000, retry_factor=2, retry_limit=300)
    set_columns(conn, job_id, attempts=1500, claims=1500)
    claimed = claim_one(conn)
    changed = complete(conn, "w1", outcome(job_id, claimed["claims"], "failed"), now=at(1))
    assert changed == {job_id: "retrying"}
    assert get(conn, job_id)["scheduled_at"] == at(301)


def test_retry_backoff_of_zero_retries_at_once_whatever_the_factor(
    conn: psycopg.Connection,
) -> None:
    job_id = push_one(conn, max_attempts=5, retry_backoff=0, retry_factor=1e300)
    set_columns(conn, job_id, attempts=2, claims=2)
    claimed = claim_one(conn)
    assert claimed["attempts"] == 3
    complete(conn, "w1", outcome(job_id, claimed["claims"], "failed"), now=at(1))
    assert get(conn, job_id)["scheduled_at"] == at(1)


def test_retry_jitter_stays_within_its_bounds(conn: psycopg.Connection) -> None:
    jobs = [spec(max_attempts=2, retry_backoff=100, retry_jitter=0.5) for _ in range(40)]
    push(conn, *jobs)
    claimed = claim(conn, limit=40)
    complete(conn, "w1", *(outcome(c["id"], 1, "failed") for c in claimed), now=at(1))
    delays = [(j["scheduled_at"] - at(1)).total_seconds() for j in all_jobs(conn).values()]
    assert all(50 <= d <= 150 for d in delays), delays
    assert len(set(delays)) > 1, "jitter varies the delay"


# --- complete: released --------------------------------------------------------------


def test_released_goes_back_to_pending_with_its_attempt_given_back(
    conn: psycopg.Connection,
) -> None:
    claimed = run_and_claim(conn, max_attempts=2, scheduled_at=at(-5), now=at(-5))
    job_id = claimed["id"]
    error = {"message": "shutting down"}
    changed = complete(conn, "w1", outcome(job_id, 1, "released", error=error), now=at(1))
    assert changed == {job_id: "pending"}
    stored = get(conn, job_id)
    assert stored["state"] == "pending"
    assert (stored["attempts"], stored["claims"]) == (0, 1)
    assert stored["scheduled_at"] == at(-5), "due at once, at its old place in line"
    assert stored["lease_expires_at"] is None
    assert stored["completed_at"] is None
    assert [(e["attempt"], e["outcome"]) for e in stored["errors"]] == [(1, "released")]
    again = claim_one(conn, "w2", now=at(1))
    assert (again["attempts"], again["claims"]) == (1, 2)


def test_released_on_the_last_attempt_can_still_run_it(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn)  # max_attempts 1
    complete(conn, "w1", outcome(claimed["id"], 1, "released"))
    again = claim_one(conn, "w2")
    assert complete(conn, "w2", outcome(claimed["id"], again["claims"], "succeeded")) == {
        claimed["id"]: "succeeded"
    }


# --- cancel --------------------------------------------------------------------------


def test_cancel_of_a_pending_job_cancels_it_at_once(conn: psycopg.Connection) -> None:
    job_id = push_one(conn)
    assert cancel(conn, job_id, now=at(2)) == "cancelled"
    stored = get(conn, job_id)
    assert stored["state"] == "cancelled"
    assert stored["completed_at"] == at(2)
    assert claim(conn, now=at(1000)) == []


def test_cancel_of_a_retrying_job_cancels_it_at_once(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn, max_attempts=2)
    complete(conn, "w1", outcome(claimed["id"], 1, "failed"))
    assert cancel(conn, claimed["id"], now=at(2)) == "cancelled"
    stored = get(conn, claimed["id"])
    assert (stored["state"], stored["completed_at"]) == ("cancelled", at(2))
    assert claim(conn, now=at(1000)) == []


def test_cancel_of_a_running_job_only_requests_it(conn: psycopg.Connection) -> None:
    claimed = run_and_claim(conn)
    before = get(conn, claimed["id"])
    assert cancel(conn, claimed["id"], now=at(2)) == "running"
    stored = get(conn, claimed["id"])
    assert stored["cancel_requested"] is True
    assert stored == {**before, "cancel_requested": True}, "nothing else changes"
    assert cancel(conn, claimed["id"], now=at(3)) == "running", "asking twice is harmless"


def test_cancel_sends_the_running_jobs_id_on_the_cancel_channel(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    claimed = run_and_claim(conn)
    listener = connect()
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(f"{harness.SCHEMA}.cancel")))
    cancel(conn, claimed["id"])
    received = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert received == [str(claimed["id"])]


@pytest.mark.parametrize("kind", ["cancelled", "failed", "timeout", "released"])
def test_owner_stopping_a_cancel_requested_job_cancels_it(
    conn: psycopg.Connection, kind: str
) -> None:
    claimed = run_and_claim(conn, max_attempts=3)
    cancel(conn, claimed["id"], now=at(1))
    changed = complete(conn, "w1", outcome(claimed["id"], 1, kind), now=at(2))
    assert changed == {claimed["id"]: "cancelled"}
    stored = get(conn, claimed["id"])
    assert (stored["state"], stored["completed_at"]) == ("cancelled", at(2))
    assert stored["lease_expires_at"] is None
    assert stored["scheduled_at"] == T0, "a cancelled job is not rescheduled"
    assert claim(conn, now=at(1000)) == []


def test_success_of_a_cancel_requested_job_keeps_its_result(conn: psycopg.Connection) -> None:
    """Documented in complete_jobs.sql: only a failure or release of a job whose
    cancel was requested makes it cancelled; a job that finished its work anyway
    succeeds with its result."""
    claimed = run_and_claim(conn)
    cancel(conn, claimed["id"], now=at(1))
    changed = complete(conn, "w1", outcome(claimed["id"], 1, "succeeded", result=7), now=at(2))
    assert changed == {claimed["id"]: "succeeded"}
    assert get(conn, claimed["id"])["result"] == 7


@pytest.mark.parametrize("final", FINAL_STATES)
def test_cancel_of_a_finished_job_changes_nothing(conn: psycopg.Connection, final: str) -> None:
    claimed = run_and_claim(conn)
    complete(conn, "w1", outcome(claimed["id"], 1, final))
    before = get(conn, claimed["id"])
    assert cancel(conn, claimed["id"], now=at(5)) == final
    assert get(conn, claimed["id"]) == before


def test_cancel_of_an_unknown_id_returns_null(conn: psycopg.Connection) -> None:
    assert cancel(conn, uuid.uuid4()) is None


# --- extend_leases -------------------------------------------------------------------


def test_extend_moves_the_lease_of_the_workers_running_jobs_only(
    conn: psycopg.Connection,
) -> None:
    mine = run_and_claim(conn, "w1")["id"]
    theirs = run_and_claim(conn, "w2")["id"]
    done = run_and_claim(conn, "w1")["id"]
    complete(conn, "w1", outcome(done, 1, "succeeded"))
    waiting = push_one(conn)
    assert extend(conn, "w1", [mine, theirs, done, waiting], lease=50, now=at(20)) == []
    jobs = all_jobs(conn)
    assert jobs[mine]["lease_expires_at"] == at(70)
    assert jobs[theirs]["lease_expires_at"] == at(LEASE)
    assert jobs[done]["lease_expires_at"] is None
    assert jobs[waiting]["lease_expires_at"] is None
    assert jobs[done]["state"] == "succeeded"
    assert jobs[waiting]["state"] == "pending"


def test_extend_returns_the_held_jobs_whose_cancel_was_requested(
    conn: psycopg.Connection,
) -> None:
    keep = run_and_claim(conn, "w1")["id"]
    stop = run_and_claim(conn, "w1")["id"]
    other = run_and_claim(conn, "w2")["id"]
    cancel(conn, stop)
    cancel(conn, other)
    assert extend(conn, "w1", [keep, stop, other], lease=10, now=at(5)) == [stop]
    jobs = all_jobs(conn)
    assert jobs[keep]["lease_expires_at"] == jobs[stop]["lease_expires_at"] == at(15)
    assert jobs[other]["lease_expires_at"] == at(LEASE)


def test_extend_keeps_a_job_whose_lease_expired_from_being_recovered(
    conn: psycopg.Connection,
) -> None:
    job_id = run_and_claim(conn, "w1")["id"]
    assert extend(conn, "w1", [job_id], lease=LEASE, now=at(LEASE + 5)) == []
    assert recover(conn, now=at(LEASE + 10)) == {}
    assert get(conn, job_id)["state"] == "running"


# --- recover_jobs --------------------------------------------------------------------


def test_recover_returns_a_job_with_an_expired_lease_to_pending(
    conn: psycopg.Connection,
) -> None:
    job_id = run_and_claim(conn, "w1", max_attempts=2, queue="default")["id"]
    assert recover(conn, now=at(LEASE + 1)) == {job_id: "pending"}
    stored = get(conn, job_id)
    assert stored["state"] == "pending"
    assert (stored["attempts"], stored["claims"]) == (1, 1), "the lost attempt counts"
    assert stored["scheduled_at"] == at(LEASE + 1)
    assert stored["lease_expires_at"] is None
    assert stored["completed_at"] is None
    [error] = stored["errors"]
    assert datetime.fromisoformat(error.pop("at")) == at(LEASE + 1)
    assert error == {
        "type": "WorkerLost",
        "message": "worker lost: w1 stopped while running attempt 1",
        "attempt": 1,
        "outcome": "lost",
    }
    again = claim_one(conn, "w2", now=at(LEASE + 1))
    assert (again["attempts"], again["claims"]) == (2, 2)


def test_recover_leaves_a_lease_that_has_not_expired(conn: psycopg.Connection) -> None:
    job_id = run_and_claim(conn, "w1", max_attempts=2)["id"]
    before = get(conn, job_id)
    assert recover(conn, now=at(LEASE)) == {}, "a lease expiring exactly now still holds"
    assert recover(conn, "w2", now=at(LEASE)) == {}, "another worker's name changes nothing"
    assert get(conn, job_id) == before


def test_recover_of_a_named_worker_takes_its_jobs_before_expiry(
    conn: psycopg.Connection,
) -> None:
    lost = run_and_claim(conn, "w1", max_attempts=2)["id"]
    alive = run_and_claim(conn, "w2", max_attempts=2)["id"]
    assert recover(conn, "w1", now=at(1)) == {lost: "pending"}
    jobs = all_jobs(conn)
    assert jobs[lost]["state"] == "pending"
    assert jobs[lost]["errors"][0]["type"] == "WorkerLost"
    assert jobs[alive]["state"] == "running"


def test_recover_on_the_last_attempt_fails_the_job(conn: psycopg.Connection) -> None:
    job_id = run_and_claim(conn, "w1", scheduled_at=at(-3), now=at(-3))["id"]
    assert recover(conn, now=at(LEASE)) == {job_id: "failed"}
    stored = get(conn, job_id)
    assert stored["state"] == "failed"
    assert stored["completed_at"] == at(LEASE)
    assert stored["scheduled_at"] == at(-3)
    assert stored["lease_expires_at"] is None
    assert [(e["type"], e["attempt"]) for e in stored["errors"]] == [("WorkerLost", 1)]
    assert claim(conn, now=at(1000)) == []


def test_recover_of_a_cancel_requested_job_cancels_it(conn: psycopg.Connection) -> None:
    job_id = run_and_claim(conn, "w1", max_attempts=5)["id"]
    cancel(conn, job_id, now=at(1))
    assert recover(conn, "w1", now=at(2)) == {job_id: "cancelled"}
    stored = get(conn, job_id)
    assert (stored["state"], stored["completed_at"]) == ("cancelled", at(2))
    assert claim(conn, now=at(1000)) == []


def test_recover_takes_at_most_p_limit_earliest_leases_first(conn: psycopg.Connection) -> None:
    ids = [run_and_claim(conn, "w1", max_attempts=2, now=at(i))["id"] for i in range(3)]
    assert recover(conn, limit=2, now=at(1000)) == {ids[0]: "pending", ids[1]: "pending"}
    assert recover(conn, limit=2, now=at(1000)) == {ids[2]: "pending"}
    assert recover(conn, limit=2, now=at(1000)) == {}


def test_recover_wakes_claimers_of_the_queues_it_refilled(
    conn: psycopg.Connection, connect: Callable[[], psycopg.Connection]
) -> None:
    run_and_claim(conn, "w1", max_attempts=2, queue="q")
    listener = connect()
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(JOBS_CHANNEL)))
    recover(conn, "w1")
    received = [n.payload for n in listener.notifies(timeout=10, stop_after=1)]
    assert received == ["q"]


def test_recovered_worker_cannot_complete_its_old_claim(conn: psycopg.Connection) -> None:
    job_id = run_and_claim(conn, "w1", max_attempts=2)["id"]
    recover(conn, now=at(LEASE + 1))
    before = get(conn, job_id)
    assert complete(conn, "w1", outcome(job_id, 1, "succeeded", result=1)) == {}
    assert get(conn, job_id) == before


# --- CHECK constraints ---------------------------------------------------------------

ILLEGAL = {
    "unknown state": {"state": "bogus"},
    "running without a lease": {"state": "running", "worker_id": "w1"},
    "running without an owner": {"state": "running", "lease_expires_at": T0},
    "a lease while pending": {"lease_expires_at": T0},
    "finished without completed_at": {"state": "succeeded"},
    "completed_at while pending": {"completed_at": T0},
    "a result while not succeeded": {"result": json.dumps(1)},
    "more attempts than claims": {"attempts": 1},
    "negative attempts": {"attempts": -1},
    "no attempts allowed": {"max_attempts": 0},
    "a zero timeout": {"timeout_seconds": 0},
    "a retry factor below 1": {"retry_factor": 0.5},
    "a jitter above 1": {"retry_jitter": 1.5},
    "kwargs not an object": {"kwargs": json.dumps([1])},
    "errors not an array": {"errors": json.dumps({})},
    "an empty queue": {"queue": ""},
}


@pytest.mark.parametrize("values", ILLEGAL.values(), ids=ILLEGAL.keys())
def test_check_constraints_reject_an_illegal_row(
    conn: psycopg.Connection, values: dict[str, Any]
) -> None:
    job_id = push_one(conn)
    before = get(conn, job_id)
    with pytest.raises(psycopg.errors.CheckViolation):
        set_columns(conn, job_id, **values)
    assert get(conn, job_id) == before


def test_check_constraints_accept_a_legal_hand_made_running_row(
    conn: psycopg.Connection,
) -> None:
    """The counterpart of the rejections: the same UPDATE helper can make a legal row."""
    job_id = push_one(conn)
    set_columns(
        conn, job_id, state="running", worker_id="w1", lease_expires_at=T0, attempts=1, claims=1
    )
    assert get(conn, job_id)["state"] == "running"
