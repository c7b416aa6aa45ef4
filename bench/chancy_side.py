"""The chancy side of ``python -m bench compare``: one workload, one run.

Runs with the python of the bench's own virtual environment for chancy
(``bench/.venv-chancy``, made by :mod:`bench.chancy_env`), never with pgdag's:
it imports only the standard library, psycopg and chancy. The caller gives it a
fresh, empty database. It prints ``MARK start`` and ``MARK end`` around what is
measured (the caller samples CPU in between) and, last, ``RESULT <json>``.

    python bench/chancy_side.py --dsn DSN --workload diamond --count 100 --settings fastest

Settings:

- ``fastest``: ``Leadership(poll_interval=1)``, ``WorkflowPlugin(polling_interval=1)``,
  queue ``polling_interval=1``, ``eager_polling=True``, ``concurrency=50`` with
  the asyncio executor, the worker's ``send_outgoing_interval`` at 0.05 s, and
  the ``chancy`` logger at WARNING (it logs every job at INFO);
- ``defaults``: ``Leadership()``, ``WorkflowPlugin()``, ``Queue("bench")`` and
  ``Worker(chancy)`` as they come (process executor, one process per core,
  5 s queue polling, 1 s updates, 30 s workflow polling, INFO logging). Only
  the first leadership election is hurried (the plugin is woken once): it
  would otherwise wait 60 s before the first workflow could advance.

Both keep chancy's other default plugins (pruner, recovery, metrics) and add
``KeepResult``: workflow steps return when they ran (their own clock), and
chancy, which stores no results, keeps that value in the job's meta, so that
hops are measured by the jobs themselves in both systems. Jobs are pushed in one
transaction (``push_many_ex``; workflows with ``push_ex``), the way pgdag's bench
pushes them in one ``push_many`` call.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from chancy import Chancy, Queue, QueuedJob, Worker, job
from chancy.plugin import Plugin
from chancy.plugins.leadership import Leadership
from chancy.plugins.workflow import Workflow, WorkflowPlugin
from psycopg.rows import dict_row

QUEUE = "bench"


@job(queue=QUEUE)
async def noop() -> None:
    return None


@job(queue=QUEUE)
async def stamp() -> float:
    """A workflow step that returns when it ran (its own clock), as pgdag's bench's."""
    return time.time()


class KeepResult(Plugin):
    """chancy stores no job results: keep the value a job returned in its meta
    (written by the same batched UPDATE that records its completion)."""

    @staticmethod
    def get_identifier() -> str:
        return "bench.keep_result"

    async def on_job_completed(
        self, *, worker: Worker, job: QueuedJob, exc: Exception | None = None, result: Any = None
    ) -> QueuedJob:
        if result is None:
            return job
        return dataclasses.replace(job, meta={**job.meta, "ran_at": result})


def diamond(i: int, _size: int) -> Workflow:
    return (
        Workflow(f"diamond-{i}")
        .add("top", stamp)
        .add("left", stamp, ["top"])
        .add("right", stamp, ["top"])
        .add("bottom", stamp, ["left", "right"])
    )


def chain(i: int, length: int) -> Workflow:
    workflow = Workflow(f"chain-{i}")
    for n in range(length):
        workflow.add(f"s{n}", stamp, [f"s{n - 1}"] if n else None)
    return workflow


def fan(i: int, width: int) -> Workflow:
    workflow = Workflow(f"fan-{i}").add("root", stamp)
    workflow.add_group([(f"m{n}", stamp) for n in range(width)], ["root"])
    return workflow.add("join", stamp, [f"m{n}" for n in range(width)])


BUILDERS = {"diamond": diamond, "chain": chain, "fan": fan}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def mark(what: str) -> None:
    print(f"MARK {what}", flush=True)


def make_app(dsn: str, settings: str) -> tuple[Chancy, Queue]:
    if settings == "fastest":
        app = Chancy(
            dsn,
            plugins=[Leadership(poll_interval=1), WorkflowPlugin(polling_interval=1), KeepResult()],
        )
        app.log.setLevel(logging.WARNING)
        queue = Queue(
            QUEUE,
            concurrency=50,
            executor=Chancy.Executor.Async,
            polling_interval=1,
            eager_polling=True,
        )
    else:
        app = Chancy(dsn, plugins=[Leadership(), WorkflowPlugin(), KeepResult()])
        queue = Queue(QUEUE)
    return app, queue


async def wait_until(app: Chancy, query: str, target: int, deadline: float) -> None:
    while True:
        async with app.pool.connection() as conn:
            cur = await conn.execute(query)
            row = await cur.fetchone()
        if row is not None and row[0] >= target:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{row[0] if row else 0} of {target} finished in time")
        await asyncio.sleep(0.05)


async def noop_jobs(app: Chancy, count: int, deadline: float) -> dict[str, Any]:
    jobs = [noop.job] * count
    mark("start")
    started = time.perf_counter()
    async with (
        app.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cursor,
        conn.transaction(),
    ):
        await app.push_many_ex(cursor, jobs)
    push_seconds = time.perf_counter() - started
    await wait_until(
        app,
        "SELECT count(*) FROM chancy_jobs WHERE state IN ('succeeded', 'failed')",
        count,
        deadline,
    )
    mark("end")
    async with app.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), "
            "extract(epoch FROM max(completed_at) - min(started_at))::float8, "
            "extract(epoch FROM max(completed_at) - min(created_at))::float8 "
            "FROM chancy_jobs WHERE queue = %s",
            (QUEUE,),
        )
        succeeded, span, span_from_created = await cur.fetchone()
    assert succeeded == count, f"{count - succeeded} jobs did not succeed"
    return {
        "steps": count,
        "push_seconds": push_seconds,
        "push_jobs_per_s": count / push_seconds,
        "drain_jobs_per_s": count / span,
        "drain_from_created_jobs_per_s": count / span_from_created,
    }


_WORKFLOW_STATS = """
SELECT
    (SELECT count(*) FROM chancy_workflow_steps) AS steps,
    (SELECT extract(epoch FROM max(j.completed_at) - min(w.created_at))::float8
       FROM chancy_workflows w
       JOIN chancy_workflow_steps s ON s.workflow_id = w.id
       JOIN chancy_jobs j ON j.id = s.job_id) AS span,
    (SELECT array_agg(extract(epoch FROM w.updated_at - w.created_at)::float8 * 1000)
       FROM chancy_workflows w) AS latencies,
    (SELECT array_agg(extract(epoch FROM sj.started_at - dj.completed_at)::float8 * 1000)
       FROM chancy_workflow_steps s
       JOIN chancy_jobs sj ON sj.id = s.job_id
       JOIN chancy_workflow_steps d
         ON d.workflow_id = s.workflow_id AND d.step_id = s.dependencies ->> 0
       JOIN chancy_jobs dj ON dj.id = d.job_id
       WHERE jsonb_array_length(s.dependencies) = 1) AS hops,
    (SELECT array_agg(((sj.meta ->> 'ran_at')::float8 - (dj.meta ->> 'ran_at')::float8) * 1000)
       FROM chancy_workflow_steps s
       JOIN chancy_jobs sj ON sj.id = s.job_id
       JOIN chancy_workflow_steps d
         ON d.workflow_id = s.workflow_id AND d.step_id = s.dependencies ->> 0
       JOIN chancy_jobs dj ON dj.id = d.job_id
       WHERE jsonb_array_length(s.dependencies) = 1) AS job_hops,
    (SELECT count(*) FILTER (WHERE state <> 'completed') FROM chancy_workflows) AS unfinished
"""


async def workflows(
    app: Chancy, kind: str, count: int, size: int, deadline: float
) -> dict[str, Any]:
    built = [BUILDERS[kind](i, size) for i in range(count)]
    mark("start")
    started = time.perf_counter()
    async with (
        app.pool.connection() as conn,
        conn.cursor(row_factory=dict_row) as cursor,
        conn.transaction(),
    ):
        for workflow in built:
            await WorkflowPlugin.push_ex(cursor, app, workflow)
    push_seconds = time.perf_counter() - started
    await wait_until(
        app,
        "SELECT count(*) FROM chancy_workflows WHERE state IN ('completed', 'failed')",
        count,
        deadline,
    )
    mark("end")
    async with app.pool.connection() as conn:
        cur = await conn.execute(_WORKFLOW_STATS)
        steps, span, latencies, hops, job_hops, unfinished = await cur.fetchone()
    assert unfinished == 0, f"{unfinished} workflows did not complete"
    return {
        "steps": steps,
        "push_seconds": push_seconds,
        "steps_per_s": steps / span,
        "workflow_latency_ms_p50": percentile(latencies or [], 50),
        "workflow_latency_ms_p95": percentile(latencies or [], 95),
        "hop_latency_ms_p50": percentile(hops or [], 50),
        "hop_latency_ms_p95": percentile(hops or [], 95),
        "job_hop_ms_p50": percentile(job_hops or [], 50),
        "job_hop_ms_p95": percentile(job_hops or [], 95),
        "completion_seconds": span,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    app, queue = make_app(args.dsn, args.settings)
    async with app:
        await app.migrate()
        await app.declare(queue, upsert=True)
        worker = Worker(app)
        if args.settings == "fastest":
            worker.send_outgoing_interval = 0.05
        async with worker:
            leadership = app.plugins[Leadership.get_identifier()]
            leadership.wake_up()
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await worker.is_leader.wait()
                while True:  # until the queue is being served
                    if QUEUE in worker.executors:
                        break
                    await asyncio.sleep(0.01)
            if args.workload == "noop":
                result = await noop_jobs(app, args.count, deadline)
            else:
                result = await workflows(app, args.workload, args.count, args.size, deadline)
            await worker.stop(timeout=5)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--workload", choices=["noop", *BUILDERS], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--size", type=int, default=0, help="chain length or fan-out width")
    parser.add_argument("--settings", choices=["fastest", "defaults"], default="fastest")
    parser.add_argument("--timeout", type=float, default=600)
    outcome = asyncio.run(main(parser.parse_args()))
    print("RESULT " + json.dumps(outcome), flush=True)
    sys.exit(0)
