"""pgdag side by side with chancy, the bare SQL ceiling, pgdag at scale, and the
CPU and memory each uses: one command, one machine, one PostgreSQL server.

    python -m bench compare [--dsn DSN] [--repeat 3] [--quick] [--json PATH]
                            [--chancy-scale 1.0] [--defaults-repeat 1] [--no-defaults]
                            [--chancy-timeout 600] [--results-md PATH] [--report JSON]

Every run gets a fresh database on the same server (the embedded default
server unless --dsn names one); runs alternate pgdag / chancy at its fastest
settings / chancy at its defaults, workload by workload, ``--repeat`` times.

- Workloads: 10,000 no-op jobs pushed in one call to an idle pool, then drained
  (push jobs/s; drain jobs/s from the first start to the last completion);
  diamonds x1,000, chains of 20 x50, fan-outs 1-1,000-1 x2, pushed in one call
  (steps/s from the push to the last completion, workflow latency push ->
  completed, hop latency dependency finished -> dependent started).
- chancy 0.26.0 runs in its own virtual environment (:mod:`bench.chancy_env`),
  as a subprocess (:mod:`bench.chancy_side`, which documents both settings).
  At its defaults it is polling-bound (about 0.5 jobs/s), so it runs tiny
  versions of the workloads (fewer workflows, a fan-out 10 wide), once unless
  --defaults-repeat.
- Ceiling: :mod:`bench.ceiling` (bare SQL claim + complete + enqueue successor).
- Scale (pgdag, :mod:`bench.scale`): diamonds x5,000 with 0, 10,000 and 100,000 idle *running*
  workflows present. First as many diamonds as are measured run to completion,
  so that every run, none present included, is measured on a warm pool. Each
  idle workflow is ``start -> later``; ``start`` runs
  (so the workflow is running), ``later``'s job is scheduled a year ahead in
  the same queue. They are pushed 10,000 per ``push_many`` call to the running
  pool, which runs their first steps; then ``VACUUM ANALYZE`` of the schema's
  tables and a ``CHECKPOINT`` (where allowed), so that the measurement sees the
  idle workflows rather than the after-effects of having just run 100,000 jobs
  (the same is done with none present). The counts run in a different order
  in each repetition, and each run with idle workflows is compared with the run
  without them of the same repetition (the median of these paired changes is
  what "flat" is judged on). And one workflow of 10,000
  steps (1 -> 9,998 -> 1): push and completion time.
- Resources (:mod:`bench.procstat`, from /proc): CPU seconds per 1,000 steps of
  the pool (pgdag: the worker processes and this process, which pushes and
  polls; chancy: its process tree, which pushes, polls and works) and of
  PostgreSQL (the backends of the run's database and the server's background
  processes), and the pool's peak RSS (pgdag: worker processes; chancy: its
  process tree), over push -> all finished.

Output: tables on stdout, JSON (git sha, PostgreSQL version, cores, every run) in
``bench/results/`` or --json, and the generated section of ``bench/RESULTS.md``
(full runs only; --results-md elsewhere, --report JSON to redo it from a JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import ceiling, chancy_env, jobs, report
from bench.common import ROOT, fresh_app, git_dirty, git_sha, print_table, write_json
from bench.procstat import CpuMeter, postmaster_of
from bench.runs import (
    RunError,
    Shape,
    fresh_database,
    measured_workflows,
    meter_window,
    per_1k,
)
from bench.scale import big_run, scale_run
from worker import Worker
from worker.embedded import resolve_dsn
from worker.redact import redacted_dsn

SIDE = Path(__file__).resolve().parent / "chancy_side.py"
RESULTS_MD = ROOT / "bench" / "RESULTS.md"

SETTINGS = {
    report.FASTEST: (
        "chancy fastest: Leadership(poll_interval=1), WorkflowPlugin(polling_interval=1), "
        "Queue(polling_interval=1, eager_polling=True, concurrency=50, executor=Async), "
        "worker.send_outgoing_interval = 0.05, chancy logger at WARNING; jobs pushed in one "
        "transaction (push_many_ex / WorkflowPlugin.push_ex); one worker process; plus a "
        "KeepResult plugin that keeps the time a step returns in its meta (for hops)"
    ),
    report.DEFAULTS: (
        "chancy defaults: Leadership(), WorkflowPlugin(), Queue('bench'), Worker(chancy) as they "
        "come (process executor with one process per core, 5 s queue polling, 1 s updates, "
        "INFO logging); only the first leadership election is hurried (the plugin is woken once "
        "instead of sleeping 60 s)"
    ),
    report.PGDAG: (
        "pgdag: Worker(processes=2, concurrency=100), WorkflowPlugin() defaults; one push_many "
        "call per workload"
    ),
}


# workload -> (pgdag and chancy at its fastest, chancy at its defaults)
FULL = {
    "noop": (Shape("noop", 10_000), Shape("noop", 10)),
    "diamond": (Shape("diamond", 1000), Shape("diamond", 5)),
    "chain": (Shape("chain", 50, 20), Shape("chain", 1, 20)),
    "fan": (Shape("fan", 2, 1000), Shape("fan", 1, 10)),
}
QUICK = {
    "noop": (Shape("noop", 500), Shape("noop", 3)),
    "diamond": (Shape("diamond", 20), Shape("diamond", 1)),
    "chain": (Shape("chain", 3, 20), Shape("chain", 1, 2)),
    "fan": (Shape("fan", 1, 100), Shape("fan", 1, 2)),
}


# -- runs ------------------------------------------------------------------------------


async def pgdag_workload(
    admin: str, shape: Shape, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    if shape.kind != "noop":
        return await measured_workflows(admin, shape, args, postmaster)
    async with fresh_database(admin) as (dsn, database):
        resources: dict[str, Any] = {}
        async with (
            fresh_app(dsn) as app,
            Worker(
                app, processes=args.processes, queues=[jobs.QUEUE], concurrency=args.concurrency
            ) as pool,
        ):
            result = await jobs.push_and_drain(
                app, pool, shape.count, window=meter_window(postmaster, database, resources)
            )
    return {**result, **per_1k(resources, result["steps"])}


async def chancy_workload(
    admin: str, shape: Shape, settings: str, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    python = chancy_env.ensure()
    async with fresh_database(admin) as (dsn, database):
        with tempfile.NamedTemporaryFile(
            "w+", prefix="pgdag-bench-chancy-", suffix=".log", delete=False
        ) as log:
            proc = await asyncio.create_subprocess_exec(
                str(python),
                str(SIDE),
                "--dsn",
                dsn,
                "--workload",
                shape.kind,
                "--count",
                str(shape.count),
                "--size",
                str(shape.size),
                "--settings",
                "fastest" if settings == report.FASTEST else "defaults",
                "--timeout",
                str(args.chancy_timeout),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
            assert proc.stdout is not None
            meter: CpuMeter | None = None
            resources: dict[str, Any] = {}
            result: dict[str, Any] | None = None
            try:
                async with asyncio.timeout(args.chancy_timeout + 60):
                    while line := await proc.stdout.readline():
                        text = line.decode().strip()
                        if text == "MARK start":
                            meter = CpuMeter(proc.pid, postmaster=postmaster, database=database)
                            meter.start()
                        elif text == "MARK end" and meter is not None:
                            resources, meter = meter.stop(), None
                        elif text.startswith("RESULT "):
                            result = json.loads(text.removeprefix("RESULT "))
                    code = await proc.wait()
            except TimeoutError:
                await _stop(proc)
                raise RunError(
                    f"chancy did not finish within {args.chancy_timeout + 60:g}s (log: {log.name})"
                ) from None
            except BaseException:  # interrupted: leave no chancy running behind us
                await _stop(proc)
                raise
            finally:
                if meter is not None:
                    meter.stop()
            if code != 0 or result is None:
                log.seek(0)
                tail = log.read()[-1500:]
                raise RunError(f"chancy exited with {code} (log: {log.name}):\n{tail}")
        os.unlink(log.name)
    return {**result, **per_1k(resources, result["steps"])}


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the subprocess we started (chancy drains on it), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def ceiling_run(
    admin: str, args: argparse.Namespace, postmaster: int | None
) -> dict[str, Any]:
    chains, length = (100, 5) if args.quick else (1000, 10)
    async with fresh_database(admin) as (dsn, database):
        meter = CpuMeter(os.getpid(), postmaster=postmaster, database=database)
        meter.start()
        try:
            result = await ceiling.measure(
                dsn, chains=chains, length=length, connections=args.ceiling_connections
            )
        finally:
            resources = meter.stop()
    resources.pop("pool_peak_rss_mib", None)
    return {**result, **per_1k(resources, result["steps"])}


# -- the whole benchmark ---------------------------------------------------------------


def _headline(result: dict[str, Any]) -> str:
    for key, unit in (
        ("drain_jobs_per_s", "jobs/s drained"),
        ("steps_per_s", "steps/s"),
    ):
        if key in result:
            extra = ""
            if result.get("job_hop_ms_p50") is not None:
                extra = f", hop p50 {result['job_hop_ms_p50']:.1f} ms"
            return f"{result[key]:,.1f} {unit}{extra}"
    return ""


async def _server_meta(admin: str) -> tuple[dict[str, Any], int | None]:
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT current_setting('server_version'), pg_backend_pid()")
        ).fetchone()
        assert row is not None
        postmaster = postmaster_of(row[1])  # while that backend lives
    meta = {
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "postgresql": row[0],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "chancy": chancy_env.CHANCY_VERSION,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_at_start": os.getloadavg()[0],
        "settings": SETTINGS,
    }
    if postmaster is None:
        print("PostgreSQL's processes are not visible here: no PostgreSQL CPU figures")
    return meta, postmaster


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    admin = resolve_dsn(args.dsn)
    meta, postmaster = await _server_meta(admin)
    if not args.no_chancy:
        chancy_env.ensure()
    shapes = QUICK if args.quick else FULL
    sections = set(args.only.split(",")) if args.only else {"workload", "ceiling", "scale", "big"}
    repeat = 1 if args.quick else args.repeat
    defaults_repeat = (
        0 if args.quick or args.no_defaults or args.no_chancy else args.defaults_repeat
    )
    if "workload" not in sections:
        defaults_repeat = 0
    idle_counts = [0, 200] if args.quick else [int(n) for n in args.idle.split(",")]
    scale_diamonds = 20 if args.quick else args.scale_diamonds
    big_width = 98 if args.quick else 9998
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()

    async def record(
        section: str, workload: str, system: str, rep: int, shape: str, go: Awaitable[Any]
    ) -> None:
        began = time.perf_counter()
        entry: dict[str, Any] = {
            "section": section,
            "workload": workload,
            "system": system,
            "rep": rep,
            "shape": shape,
            "result": {},
            "error": None,
        }
        try:
            entry["result"] = await go
        except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["seconds"] = time.perf_counter() - began
        runs.append(entry)
        outcome = entry["error"] or _headline(entry["result"])
        print(
            f"  {system:<16} {shape:<28} {outcome}  ({entry['seconds']:.1f} s)",
            flush=True,
        )

    reps = max(repeat, defaults_repeat)
    for rep in range(reps):
        print(f"repetition {rep + 1}/{reps}", flush=True)
        for workload, (shape, tiny) in shapes.items():
            if rep < repeat and "workload" in sections:
                pgdag = pgdag_workload(admin, shape, args, postmaster)
                await record("workload", workload, report.PGDAG, rep, shape.label, pgdag)
                if not args.no_chancy:
                    fast = shape.scaled(args.chancy_scale)
                    chancy = chancy_workload(admin, fast, report.FASTEST, args, postmaster)
                    await record("workload", workload, report.FASTEST, rep, fast.label, chancy)
            if rep < defaults_repeat:
                chancy = chancy_workload(admin, tiny, report.DEFAULTS, args, postmaster)
                await record("workload", workload, report.DEFAULTS, rep, tiny.label, chancy)
        if rep >= repeat:
            continue
        if "ceiling" in sections:
            bare = ceiling_run(admin, args, postmaster)
            await record("ceiling", "ceiling", report.SQL, rep, "bare SQL, batches of 100", bare)
        # each rep in another order (no count always first, after the ceiling run); each
        # run with idle workflows is also compared with the run without, of its own rep
        order = idle_counts[rep % len(idle_counts) :] + idle_counts[: rep % len(idle_counts)]
        by_idle: dict[int, dict[str, Any]] = {}
        for idle in order if "scale" in sections else []:
            label = f"diamond x{scale_diamonds:,}, {idle:,} idle"
            scaled = scale_run(admin, idle, scale_diamonds, args, postmaster)
            await record("scale", f"idle {idle:,}", report.PGDAG, rep, label, scaled)
            by_idle[idle] = runs[-1]["result"]
        report.pair_with_none(by_idle)
        if "big" in sections:
            big = big_run(admin, big_width, args, postmaster)
            await record("big", "one workflow", report.PGDAG, rep, f"1-{big_width:,}-1 (x1)", big)

    meta["wall_seconds"] = time.perf_counter() - started
    meta["load_average_at_end"] = os.getloadavg()[0]
    params = {k: v for k, v in vars(args).items() if k not in ("report",)} | {
        "dsn": redacted_dsn(args.dsn) if args.dsn else None,
        "repeat": repeat,
        "defaults_repeat": defaults_repeat,
    }
    summary = report.summarise(runs)
    return {
        "benchmark": "compare",
        "params": params,
        "meta": meta,
        "summary": summary,
        "targets": report.targets(summary),
        "runs": runs,
    }


def finish(data: dict[str, Any], args: argparse.Namespace) -> None:
    meta = data["meta"]
    print(
        f"\npgdag {meta['git_sha']}{' (uncommitted changes)' if meta.get('git_dirty') else ''} "
        f"against chancy {meta['chancy']}, PostgreSQL {meta['postgresql']}, "
        f"{meta['cores']} cores, {meta.get('wall_seconds', 0) / 60:.1f} min, load average "
        f"{meta.get('load_average_at_start', 0):.1f} at the start, "
        f"{meta.get('load_average_at_end', 0):.1f} at the end"
    )
    for description in meta["settings"].values():
        print(f"- {description}")
    report.print_tables(data, print_table)


def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


async def main(args: argparse.Namespace) -> int:
    if args.report:
        data = _load(args.report)
        data["json_path"] = args.report
        finish(data, args)
        if not args.no_results_md:
            target = Path(args.results_md) if args.results_md else RESULTS_MD
            report.update_results(target, report.render_markdown(data))
            print(f"\nupdated {target}")
        return 0
    data = await run_all(args)
    path = write_json("compare", data, args.json)  # first: a rendering bug loses no run
    data["json_path"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    finish(data, args)
    target = Path(args.results_md) if args.results_md else None
    if target is None and not args.quick and not args.no_results_md:
        target = RESULTS_MD
    if target is not None:
        report.update_results(target, report.render_markdown(data))
        print(f"updated {target}")
    errors = [r for r in data["runs"] if r["error"]]
    for run in errors:
        print(f"FAILED: {run['system']} {run['shape']}: {run['error']}")
    return 1 if errors else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", default=None, help="default: $PGDAG_DSN, else the embedded server")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--chancy-scale",
        type=float,
        default=1.0,
        help="chancy's fastest runs do this fraction of each workload's workflows (default 1)",
    )
    parser.add_argument(
        "--defaults-repeat", type=int, default=1, help="runs of chancy at its defaults (tiny sizes)"
    )
    parser.add_argument("--no-defaults", action="store_true", help="skip chancy at its defaults")
    parser.add_argument(
        "--no-chancy", action="store_true", help="pgdag, the ceiling and scale only"
    )
    parser.add_argument(
        "--chancy-timeout", type=float, default=600, help="seconds a chancy run may take"
    )
    parser.add_argument("--ceiling-connections", type=int, default=4)
    parser.add_argument(
        "--idle",
        default="0,10000,100000",
        help="idle running workflows present in the scale runs (default 0,10000,100000)",
    )
    parser.add_argument(
        "--scale-diamonds",
        type=int,
        default=5000,
        help="diamonds per scale run (default 5,000: a 1,000-diamond run lasts 0.3 s, too short "
        "to tell 10 %% from this machine's noise)",
    )
    parser.add_argument(
        "--only", default=None, help="comma list of sections: workload,ceiling,scale,big"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one run (CI smoke)")
    parser.add_argument("--json", default=None, help="where to write the JSON")
    parser.add_argument(
        "--results-md", default=None, help="the RESULTS.md to update (full runs: bench/RESULTS.md)"
    )
    parser.add_argument("--no-results-md", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--report", default=None, help="render this JSON again, run nothing")
