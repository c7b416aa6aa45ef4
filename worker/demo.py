"""The main job (``pgdag demo``): a pool of worker processes running a demo
batch on the embedded PostgreSQL (or the server named by ``--dsn``/``$PGDAG_DSN``)."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from uuid import UUID

from worker.app import App
from worker.job import as_job, current_job, job
from worker.plugins.workflow import Sequence, Workflow, WorkflowPlugin
from worker.pool import Worker
from worker.progress import Progress

log = logging.getLogger("pgdag.demo")

QUEUE = "demo"


@job(queue=QUEUE)
async def noop(i: int) -> int:
    """The batch: as small as a job gets, so the queue itself is measured."""
    return i


@job(queue=QUEUE)
def greet(name: str) -> str:
    """A synchronous job (runs in a thread of a worker process) that logs."""
    logging.getLogger("pgdag.demo").info("hello, %s", name)
    return f"hello, {name}"


@job(queue=QUEUE, max_attempts=3)
async def flaky(fail_times: int, attempt_marker: str) -> str:
    """Fails ``fail_times`` times, then succeeds: shows retries with backoff."""
    running = current_job()
    attempt = running.attempt if running else 1
    if attempt <= fail_times:
        raise RuntimeError(f"{attempt_marker}: failing on purpose (attempt {attempt})")
    return f"succeeded on attempt {attempt}"


# -- the reference's workflow examples -------------------------------------------------


@job(queue=QUEUE)
async def top() -> str:
    return "top"


@job(queue=QUEUE)
async def left() -> str:
    return "left"


@job(queue=QUEUE)
async def right() -> str:
    return "right"


@job(queue=QUEUE)
async def bottom() -> str:
    return "bottom"


@job(queue=QUEUE)
async def first() -> str:
    return "first"


@job(queue=QUEUE)
async def second() -> str:
    return "second"


@job(queue=QUEUE)
async def third() -> str:
    return "third"


def example_workflow(name: str = "example") -> Workflow:
    return (
        Workflow(name)
        .add(top, "top")
        .add(left, "left", ["top"])
        .add(right, "right", ["top"])
        .add(bottom, "bottom", ["left", "right"])
    )


@dataclass
class DemoReport:
    jobs: int
    push_seconds: float
    drain_seconds: float
    states: dict[str, int]

    def summary(self) -> str:
        return (
            f"{self.jobs:,} jobs: pushed in {self.push_seconds:.2f}s "
            f"({self.jobs / self.push_seconds:,.0f} jobs/s), run in {self.drain_seconds:.2f}s "
            f"({self.jobs / self.drain_seconds:,.0f} jobs/s); final states: "
            + ", ".join(f"{state} {count:,}" for state, count in sorted(self.states.items()))
        )


async def run_demo(app: App, *, jobs: int = 20_000, processes: int = 2) -> DemoReport:
    async with Worker(app, processes=processes, queues=[QUEUE], concurrency=100) as _pool:
        greeting = await app.push(greet.job.with_kwargs(name="pgdag"))
        retried = await app.push(
            flaky.job.with_kwargs(fail_times=2, attempt_marker="flaky demo").with_retry(
                backoff=0.05, jitter=0
            )
        )
        done = await app.wait_for_job(greeting, timeout=60)
        print(f"sync job greet: {done.state} -> {done.result!r}")
        done = await app.wait_for_job(retried, timeout=60)
        print(
            f"async job flaky: {done.state} after {done.attempts} attempts "
            f"({len(done.errors)} errors recorded) -> {done.result!r}"
        )

        async with app.connection() as conn:
            since = await app.queries.server_now(conn)
        started = time.perf_counter()
        await app.push_many(noop.job.with_kwargs(i=i) for i in range(jobs))
        pushed = time.perf_counter()
        progress = Progress(jobs, "running demo batch")
        while True:
            async with app.connection() as conn:
                counts = await app.queries.counts(conn, QUEUE, since)
            finished = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
            progress.update(finished)
            if finished >= jobs:
                break
            await asyncio.sleep(0.1)
        drained = time.perf_counter()
    return DemoReport(jobs, pushed - started, drained - pushed, counts)


async def run_workflow_demo(app: App, *, workflows: int = 2_000, processes: int = 2) -> str:
    """The reference's two examples, then a batch of diamond workflows."""
    async with Worker(app, processes=processes, queues=[QUEUE], concurrency=100):
        example_id = await WorkflowPlugin.push(app, example_workflow())
        example = await WorkflowPlugin.wait_for_workflow(app, example_id, timeout=60)
        print(f"\nworkflow {example.name}: {example.state.value}")
        dot = io.StringIO()
        WorkflowPlugin.generate_dot(example, dot)
        print(dot.getvalue(), end="")

        sequence_id = await Sequence("example_sequence", [first, second, third]).push(app)
        sequence = await WorkflowPlugin.wait_for_workflow(app, sequence_id, timeout=60)
        order = sorted(sequence.steps.values(), key=lambda s: s.step_id)
        print(
            f"sequence {sequence.name}: {sequence.state.value} "
            f"({' -> '.join(as_job(s.job).func.rsplit('.', 1)[1] for s in order)})"
        )

        progress = Progress(workflows, "running diamond workflows")
        started = time.perf_counter()
        ids = await WorkflowPlugin.push_many(
            app, [example_workflow(f"diamond-{i}") for i in range(workflows)]
        )
        while True:
            async with app.connection() as conn:
                states = await app.queries.workflow_states(conn, [UUID(i) for i in ids])
            finished = sum(state in ("completed", "failed") for state in states.values())
            progress.update(finished)
            if finished >= workflows:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started
    outcome = {
        state: sum(1 for s in states.values() if s == state) for state in set(states.values())
    }
    steps = 4 * workflows
    return (
        f"{workflows:,} diamond workflows ({steps:,} steps) pushed and run in {elapsed:.2f}s: "
        f"{steps / elapsed:,.0f} steps/s; final states: "
        + ", ".join(f"{state} {count:,}" for state, count in sorted(outcome.items()))
    )
