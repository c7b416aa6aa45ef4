"""Workflow throughput and latency, advancement in PostgreSQL.

    python -m bench workflows [--dsn DSN] [--processes 2] [--concurrency 100]
                              [--repeat 3] [--quick] [--json PATH]

Workloads (each on a fresh schema, pool of P processes started idle):
- diamond x1000: top -> (left, right) -> bottom;
- chain of 20 x50;
- fan-out 1 -> 1,000 -> 1, x2;
- push of one 10,000-step workflow (1 -> 9,998 -> 1): push time, then completion.
Each workload's workflows are pushed in one ``push_many`` call.
Reported: steps/s (first step created to last step finished, PostgreSQL's clock),
workflow latency p50/p95 (created -> completed), chain hop latency p50/p95 (a
dependency finished -> its dependent started).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import sql

from bench.common import (
    Window,
    fresh_app,
    percentile,
    print_table,
    run_metadata,
    summarise,
    write_json,
)
from worker import App, IsAJob, Job, Worker, job
from worker.plugins.workflow import Workflow, WorkflowPlugin

QUEUE = "bench"


@job(queue=QUEUE)
async def step() -> None:
    return None


@job(queue=QUEUE)
async def stamp() -> float:
    """A step that returns when it ran (its own clock): hops measured by the jobs
    themselves, whatever timestamps the system records (``compare`` uses it)."""
    return time.time()


Step = Job | IsAJob


def diamond(i: int, job: Step = step) -> Workflow:
    return (
        Workflow(f"diamond-{i}")
        .add("top", job)
        .add("left", job, ["top"])
        .add("right", job, ["top"])
        .add("bottom", job, ["left", "right"])
    )


def chain(i: int, length: int = 20, job: Step = step) -> Workflow:
    workflow = Workflow(f"chain-{i}")
    for n in range(length):
        workflow.add(f"s{n}", job, [f"s{n - 1}"] if n else None)
    return workflow


def fan(i: int, width: int = 1000, job: Step = step) -> Workflow:
    workflow = Workflow(f"fan-{i}").add("root", job)
    workflow.add_group([(f"m{n}", job) for n in range(width)], ["root"])
    return workflow.add("join", job, [f"m{n}" for n in range(width)])


_STATS = """
WITH w AS (SELECT * FROM {s}.workflows WHERE id = ANY (%(ids)s)),
     s AS (SELECT * FROM {s}.workflow_steps WHERE workflow_id = ANY (%(ids)s))
SELECT
    (SELECT count(*) FROM s) AS steps,
    (SELECT extract(epoch FROM max(s.completed_at) - min(w.created_at))
       FROM w JOIN s ON s.workflow_id = w.id) AS span,
    (SELECT array_agg(extract(epoch FROM w.completed_at - w.created_at) * 1000) FROM w)
       AS latencies,
    (SELECT array_agg(extract(epoch FROM s.started_at - d.completed_at) * 1000)
       FROM s
       JOIN s AS d ON d.workflow_id = s.workflow_id AND d.step_id = s.dependencies[1]
       WHERE cardinality(s.dependencies) = 1) AS hops,
    (SELECT array_agg(((sj.result #>> '{{}}')::float8 - (dj.result #>> '{{}}')::float8) * 1000)
       FROM s
       JOIN s AS d ON d.workflow_id = s.workflow_id AND d.step_id = s.dependencies[1]
       JOIN {s}.jobs AS sj ON sj.id = s.job_id
       JOIN {s}.jobs AS dj ON dj.id = d.job_id
       WHERE cardinality(s.dependencies) = 1
         AND jsonb_typeof(sj.result) = 'number' AND jsonb_typeof(dj.result) = 'number')
       AS job_hops,
    (SELECT count(*) FILTER (WHERE state <> 'completed') FROM w) AS unfinished
"""


async def _stats(app: App, ids: list[UUID]) -> dict[str, Any]:
    query = sql.SQL(_STATS).format(s=sql.Identifier(app.schema))
    async with app.connection() as conn:
        cur = await conn.execute(query, {"ids": ids})
        row = await cur.fetchone()
    assert row is not None
    steps, span, latencies, hops, job_hops, unfinished = row
    assert unfinished == 0, f"{unfinished} workflows did not complete"
    latencies = [float(v) for v in latencies or []]  # numeric -> float
    hops = [float(v) for v in hops or []]
    job_hops = [float(v) for v in job_hops or []]
    return {
        "steps": steps,
        "steps_per_s": steps / float(span),
        "workflow_latency_ms_p50": percentile(latencies, 50),
        "workflow_latency_ms_p95": percentile(latencies, 95),
        "hop_latency_ms_p50": percentile(hops, 50),
        "hop_latency_ms_p95": percentile(hops, 95),
        "completion_seconds": float(span),
        # only with steps that return when they ran (stamp): the jobs' own clock
        "job_hop_ms_p50": percentile(job_hops, 50) if job_hops else None,
        "job_hop_ms_p95": percentile(job_hops, 95) if job_hops else None,
    }


async def wait_all(app: App, count: int, since: datetime, timeout: float = 600) -> None:
    """Until ``count`` workflows created since ``since`` (PostgreSQL's clock)
    completed or failed. Through the index on created_at: polled by their ids,
    PostgreSQL chose to scan every workflow, and with 100,000 idle ones present
    the polling itself took most of a core."""
    query = sql.SQL(
        "SELECT count(*) FROM {}.workflows "
        "WHERE created_at >= %s AND state IN ('completed', 'failed')"
    ).format(sql.Identifier(app.schema))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with app.connection() as conn:
            cur = await conn.execute(query, (since,), prepare=False)
            row = await cur.fetchone()
        if row is not None and row[0] >= count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"workflows did not finish within {timeout:g}s")


async def run_workflows(
    dsn: str | None,
    build: Callable[[int], Workflow],
    count: int,
    *,
    processes: int = 2,
    concurrency: int = 100,
    prepare: Callable[[App], Awaitable[Any]] | None = None,
    window: Window | None = None,
) -> dict[str, Any]:
    """One run on a fresh schema: start an idle pool, ``prepare`` (e.g. add other
    workflows), then push ``count`` workflows in one ``push_many`` call and wait
    for them; ``window`` wraps the push and the wait."""
    async with fresh_app(dsn) as app:
        app.plugins.append(WorkflowPlugin())
        async with Worker(
            app, processes=processes, queues=[QUEUE], concurrency=concurrency
        ) as pool:
            if prepare is not None:
                await prepare(app)
            workflows = [build(i) for i in range(count)]
            async with app.connection() as conn:
                since = await app.queries.server_now(conn)
            async with window(app, pool) if window is not None else nullcontext():
                started = time.perf_counter()
                ids = [UUID(i) for i in await WorkflowPlugin.push_many(app, workflows)]
                push_seconds = time.perf_counter() - started
                await wait_all(app, len(ids), since)
        result = await _stats(app, ids)
        result["push_seconds"] = push_seconds
        result["meta"] = await run_metadata(app)
        return result


async def _run(
    dsn: str | None, args: argparse.Namespace, build: Callable[[int], Workflow], count: int
) -> dict[str, Any]:
    return await run_workflows(
        dsn, build, count, processes=args.processes, concurrency=args.concurrency
    )


# Every step is a ``stamp``: hops are measured on the jobs' own clock (a completion
# and the next claim share a transaction, so PostgreSQL's timestamps say 0 ms).
WORKLOADS: dict[str, tuple[Callable[[int], Workflow], int, int]] = {
    # name: (builder, count, count in --quick)
    "diamond x1000": (lambda i: diamond(i, job=stamp), 1000, 20),
    "chain of 20 x50": (lambda i: chain(i, job=stamp), 50, 3),
    "fan-out 1-1000-1 x2": (lambda i: fan(i, job=stamp), 2, 1),
    "one workflow of 10,000 steps": (lambda i: fan(i, 9998, job=stamp), 1, 1),
}


async def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.repeat = 1
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for name, (build, count, quick) in WORKLOADS.items():
            if args.quick and name.startswith("one workflow"):
                build = lambda i: fan(i, 98, job=stamp)  # noqa: E731 - the small version
            print(f"{name} ...", flush=True)
            results.setdefault(name, []).append(
                await _run(args.dsn, args, build, quick if args.quick else count)
            )
    keys = [
        "steps_per_s",
        "workflow_latency_ms_p50",
        "workflow_latency_ms_p95",
        "job_hop_ms_p50",
        "job_hop_ms_p95",
        "push_seconds",
    ]
    summary = {
        name: {k: summarise([r[k] for r in runs]) for k in keys} for name, runs in results.items()
    }
    rows = []
    for name, stats in summary.items():
        rows.append(
            [name, f"{results[name][0]['steps']:,}"]
            + [
                f"{stats[k]['median']:,.1f}" if k != "push_seconds" else f"{stats[k]['median']:.3f}"
                for k in keys
            ]
        )
    meta = next(iter(results.values()))[0]["meta"]
    print_table(
        f"pgdag workflows: {args.processes} processes x {args.concurrency}, PostgreSQL "
        f"{meta['postgresql']}, {meta['cores']} cores, {args.repeat} run(s), medians",
        [
            "workload",
            "steps",
            "steps/s",
            "wf p50 ms",
            "wf p95 ms",
            "hop p50 ms",
            "hop p95 ms",
            "push s",
        ],
        rows,
    )
    write_json(
        "workflows",
        {
            "benchmark": "workflows",
            "params": vars(args),
            "meta": meta,
            "summary": summary,
            "runs": results,
        },
        args.json,
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    parser.add_argument("--json", default=None, help="where to write the JSON")
