"""Job throughput and latency: push N no-op jobs, drain them with P processes.

    python -m bench jobs [--dsn DSN] [--jobs 10000] [--processes 2] [--concurrency 100]
                         [--repeat 3] [--latency-samples 200] [--quick] [--json PATH]

- push: one ``push_many`` of N jobs (jobs/s);
- drain: N jobs pushed at once to an idle pool of P processes, from the push's
  commit to the last completion, both read from PostgreSQL's clock (jobs/s);
- start latency: single jobs pushed one at a time to an idle pool, ``started_at
  - created_at`` (p50/p95, ms).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import nullcontext
from typing import Any

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
from worker import App, Worker, job

QUEUE = "bench"


@job(queue=QUEUE)
async def noop() -> None:
    return None


async def _wait_finished(app: App, since: Any, total: int) -> None:
    while True:
        async with app.connection() as conn:
            counts = await app.queries.counts(conn, QUEUE, since)
        if sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled")) >= total:
            return
        await asyncio.sleep(0.05)


_FIRST_START = "SELECT extract(epoch FROM max(completed_at) - min(started_at)) FROM {}.jobs "


async def push_and_drain(
    app: App, pool: Worker, count: int, *, window: Window | None = None
) -> dict[str, float]:
    """Push ``count`` no-op jobs in one ``push_many`` call to the running, idle
    ``pool`` and wait until all finished; ``window`` wraps the push and the wait.

    Returns the push's jobs/s, and the drain's jobs/s measured two ways (both
    PostgreSQL's clock): from the jobs' creation (the push transaction's start)
    to the last completion, and from the first start to the last completion."""
    async with app.connection() as conn:
        since = await app.queries.server_now(conn)
    jobs = [noop.job] * count
    async with window(app, pool) if window is not None else nullcontext():
        started = time.perf_counter()
        await app.push_many(jobs)
        push_seconds = time.perf_counter() - started
        await _wait_finished(app, since, count)
    async with app.connection() as conn:
        span = await app.queries.batch_span(conn, QUEUE, since)
        query = sql.SQL(_FIRST_START + "WHERE queue = %s AND created_at >= %s").format(
            sql.Identifier(app.schema)
        )
        cur = await conn.execute(query, (QUEUE, since))
        row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return {
        "steps": count,
        "push_seconds": push_seconds,
        "push_jobs_per_s": count / push_seconds,
        "drain_from_created_jobs_per_s": count / span,
        "drain_jobs_per_s": count / float(row[0]),
    }


async def one_run(dsn: str | None, args: argparse.Namespace) -> dict[str, Any]:
    async with fresh_app(dsn) as app:
        meta = await run_metadata(app)
        async with Worker(
            app, processes=args.processes, queues=[QUEUE], concurrency=args.concurrency
        ) as pool:
            drained = await push_and_drain(app, pool, args.jobs)

            latencies = []
            for _ in range(args.latency_samples):
                job_id = await app.push(noop.job)
                done = await app.wait_for_job(job_id, timeout=30)
                assert done.started_at is not None
                latencies.append((done.started_at - done.created_at).total_seconds() * 1000)
                await asyncio.sleep(0.01)
        return {
            "meta": meta,
            "push_jobs_per_s": drained["push_jobs_per_s"],
            # from the push's creation time to the last completion, as always here
            "drain_jobs_per_s": drained["drain_from_created_jobs_per_s"],
            "start_latency_ms_p50": percentile(latencies, 50),
            "start_latency_ms_p95": percentile(latencies, 95),
        }


async def main(args: argparse.Namespace) -> int:
    if args.quick:
        args.jobs, args.repeat, args.latency_samples = 1000, 1, 20
    runs = []
    for i in range(args.repeat):
        print(
            f"run {i + 1}/{args.repeat}: {args.jobs:,} jobs, {args.processes} processes ...",
            flush=True,
        )
        runs.append(await one_run(args.dsn, args))
    keys = ["push_jobs_per_s", "drain_jobs_per_s", "start_latency_ms_p50", "start_latency_ms_p95"]
    summary = {k: summarise([r[k] for r in runs]) for k in keys}
    units = {"push_jobs_per_s": "jobs/s", "drain_jobs_per_s": "jobs/s"}
    rows = [
        [
            k.removesuffix("_per_s").replace("_", " "),
            f"{v['median']:,.1f}",
            f"{v['min']:,.1f} - {v['max']:,.1f}",
            units.get(k, "ms"),
        ]
        for k, v in summary.items()
    ]
    meta = runs[0]["meta"]
    print_table(
        f"pgdag jobs: {args.jobs:,} no-op jobs, {args.processes} processes x "
        f"{args.concurrency}, PostgreSQL {meta['postgresql']}, {meta['cores']} cores, "
        f"{args.repeat} run(s)",
        ["metric", "median", "min - max", "unit"],
        rows,
    )
    write_json(
        "jobs",
        {"benchmark": "jobs", "params": vars(args), "meta": meta, "summary": summary, "runs": runs},
        args.json,
    )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    parser.add_argument("--json", default=None, help="where to write the JSON")
