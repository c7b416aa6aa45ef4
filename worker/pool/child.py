"""One worker process: claim, run, complete, in a loop.

- **Claiming** asks for a quarter of the slots first and, when that came back
  full, a few milliseconds later for all the free ones (a burst is shared with
  the other processes, notified at the same moment), when at least half the
  slots are free (or none is busy), and only while the queues
  may hold due work: after a short claim, the process waits for a notification
  on ``<schema>.jobs`` or the poll interval.
- **Completing**: outcomes accumulate while a flush is in flight and go in one
  call as soon as the previous one returns; no fixed delay. That call
  (``complete_and_claim_jobs``) also claims jobs for the slots that are free, in
  the same transaction: the steps a completion made ready start without another
  round trip. Slots asked for by a claim in flight are reserved, so the claim
  loop and the completer never claim the same slot twice.
  A batch PostgreSQL refuses (a jsonb cannot hold U+0000) is sent job by job,
  the culprit's result turned into a failure and its error texts escaped.
- **Heartbeat**: renews the leases of the jobs held, learns of cancellations
  missed by the listener, recovers jobs of lost processes, and notices the
  death of the supervisor.
- **Replacing itself**: a sync job past its timeout or cancelled cannot be
  stopped (it is a thread), so the process reports that job, gives the other
  jobs it holds back (``released``: no attempt lost), flushes, and exits with
  :data:`EXIT_REPLACE`; the supervisor starts a fresh process.
- **SIGTERM**: stop claiming, let running jobs finish within the grace period,
  release the rest, flush, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection

import psycopg
from psycopg_pool import AsyncConnectionPool

from worker.listener import Listener
from worker.plugins.workflow.advance import advance_until_idle
from worker.pool.executor import Executor, Outcome, Running, error_info, outcome
from worker.pool.logs import install_in_child
from worker.queries import Claimed, Queries

log = logging.getLogger("pgdag.worker")

EXIT_REPLACE = 75  # "replace me": a sync job had to be abandoned
EXIT_STARTUP_FAILED = 76  # importing --import modules or connecting failed
# After a first claim of a quarter of the slots came back full: the pause before
# claiming the rest, in which the other processes (woken by the same NOTIFY, a
# round trip away) claim their share of a burst.
_SHARE_PAUSE = 0.003


@dataclass(frozen=True)
class ChildConfig:
    dsn: str
    schema: str
    worker_id: str
    queues: tuple[str, ...]
    concurrency: int
    imports: tuple[str, ...]
    lease_seconds: float
    poll_interval: float
    grace_period: float
    log_level: int
    supervisor_pid: int
    workflow_batch: int = 1000  # WorkflowPlugin's max_workflows_per_run


def main(config: ChildConfig, logs: Connection, ready: Connection) -> None:
    """Entry point of the child process (multiprocessing, spawn). ``logs`` and
    ``ready`` are pipes to the supervisor: for log records, and for the startup
    status (``"ready"`` or what went wrong)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides on Ctrl-C
    install_in_child(logs, config.log_level)
    try:
        for module in config.imports:
            importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - report any import failure
        log.error("worker %s cannot import its modules: %s", config.worker_id, exc)
        ready.send(f"import failed: {exc!r}")
        _exit(EXIT_STARTUP_FAILED)
    code = asyncio.run(Child(config, ready).run())
    _exit(code)


def _exit(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads of abandoned sync jobs may still run: do not wait for them.
    os._exit(code)


class Child:
    def __init__(self, config: ChildConfig, ready: Connection) -> None:
        self.config = config
        self.queries = Queries(config.schema)
        self._ready = ready
        self._wake = asyncio.Event()
        self._may_have_work = True
        self._stopping = False
        self._exit_code = 0
        self._outcomes: list[Outcome] = []
        self._flush_wanted = asyncio.Event()
        self._advance_wanted = asyncio.Event()
        self._closing = False  # the completer sends what is left, then returns
        self._threshold = max(1, config.concurrency // 2)
        # a round of claims starts with a quarter of the slots, then pauses before
        # taking the rest: work that arrives at once (a push) is shared with the
        # other processes, which were notified at the same moment, instead of
        # going whole to the first one awake (which then hands each step's
        # successor to itself: 50 chains ran in one process, the other idle)
        self._claim_batch = max(1, -(-config.concurrency // 4))
        self._reserved = 0  # slots that claims in flight may fill
        self._notices = 0  # notifications that may mean new jobs, ever
        self._replacing = False

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.executor = Executor(config.concurrency, self._on_outcome, self._replace)
        try:
            # one connection per role, each its own pool of one (which replaces it
            # when it breaks): a role's functions are planned in one backend, not
            # in each of four (a cold backend plans complete_and_claim_jobs for
            # about 12 ms; a short run paid that up to four times per process)
            self.pools = {
                role: AsyncConnectionPool(
                    config.dsn,
                    min_size=1,
                    max_size=1,
                    kwargs={"autocommit": True},
                    open=False,
                    name=f"pgdag-{role}",
                )
                for role in ("claim", "complete", "advance", "heartbeat")
            }
            await asyncio.gather(*(p.open(wait=True, timeout=30) for p in self.pools.values()))
            self.listener = Listener(
                config.dsn, config.schema, ["jobs", "cancel", "workflows"], self._notified
            )
            await self.listener.start()
        except (psycopg.Error, TimeoutError) as exc:
            self._ready.send(f"cannot connect: {exc}")
            return EXIT_STARTUP_FAILED
        self._ready.send("ready")
        log.debug("worker %s ready (queues %s)", config.worker_id, ",".join(config.queues))
        completer = asyncio.create_task(self._completer(), name="pgdag-completer")
        heartbeat = asyncio.create_task(self._heartbeat(), name="pgdag-heartbeat")
        advancer = asyncio.create_task(self._advancer(), name="pgdag-advancer")
        try:
            await self._claim_loop()
            await self._drain()
        finally:
            heartbeat.cancel()
            advancer.cancel()
            await self._flush_all(completer)
            await self.listener.stop()
            await asyncio.gather(*(p.close() for p in self.pools.values()))
            self.executor.shutdown()
        return self._exit_code

    def stop(self) -> None:
        if not self._stopping:
            log.info("worker %s stopping: no new jobs, draining", self.config.worker_id)
        self._stopping = True
        self._wake.set()

    async def _drain(self) -> None:
        """After claiming stopped: wait up to the grace period (not when the
        process is being replaced), then give back whatever still runs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0 if self._replacing else self.config.grace_period)
        while self.executor.running and loop.time() < deadline:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.05)
        await self.executor.release_all()

    # -- claiming ----------------------------------------------------------------

    async def _claim_loop(self) -> None:
        config = self.config
        queues = list(config.queues)
        filling = False  # the last claim got all it asked for: go on while slots are free
        while not self._stopping:
            self._wake.clear()
            free = self._free()
            idle = not self.executor.running and not self._reserved
            start = free >= self._threshold or idle or filling
            if self._may_have_work and free > 0 and start:
                notices = self._notices
                ask = free if filling else min(free, self._claim_batch)
                self._reserved += ask
                try:
                    async with self.pools["claim"].connection() as conn:
                        claimed = await self.queries.claim(
                            conn, config.worker_id, queues, ask, config.lease_seconds
                        )
                except psycopg.Error as exc:
                    log.warning("claiming failed (%s); retrying", exc)
                    await asyncio.sleep(1)
                    continue
                finally:
                    self._reserved -= ask
                self._start(claimed, ask, notices)
                full = len(claimed) == ask
                if full and not filling:
                    # a burst: leave the other processes, notified at the same
                    # moment, time to claim their share before taking the rest
                    await asyncio.sleep(_SHARE_PAUSE)
                filling = full
                if claimed:
                    await asyncio.sleep(0)  # let the jobs start before claiming more
                    continue
            filling = False  # a new round starts at half the slots free again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), config.poll_interval)
            if not self._wake.is_set():
                self._may_have_work = True  # poll: scheduled jobs may have come due

    def _free(self) -> int:
        return self.config.concurrency - len(self.executor.running) - self._reserved

    def _start(self, claimed: list[Claimed], asked: int, notices: int) -> None:
        """Run what a claim returned. A short claim means the queues are empty,
        unless a notification came while it was in flight."""
        if len(claimed) < asked and notices == self._notices:
            self._may_have_work = False
        if self._stopping:  # claimed while we began to stop: give them back at once
            self._outcomes.extend(outcome(job, "released") for job in claimed)
            self._flush_wanted.set()
            return
        for job in claimed:
            self.executor.start(job)

    def _notified(self, what: str, payload: str) -> None:
        if what == "jobs":
            if not payload or payload in self.config.queues:
                self._notices += 1
                self._may_have_work = True
                self._wake.set()
        elif what == "workflows":
            self._advance_wanted.set()
        elif what == "cancel":
            if payload:
                self._cancel(payload)
            else:  # after a reconnect: anything may have been missed
                self._notices += 1
                self._may_have_work = True
                self._wake.set()

    def _cancel(self, job_id: str) -> None:
        if job_id in self.executor.running:
            log.info("cancelling job %s", job_id)
            self.executor.interrupt(job_id, "cancelled")

    # -- completing ------------------------------------------------------------

    def _on_outcome(self, running: Running, result: Outcome) -> None:
        self._outcomes.append(result)
        self._flush_wanted.set()
        if self._free() >= self._threshold or not self.executor.running:
            self._wake.set()

    async def _completer(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            while self._outcomes:
                batch, self._outcomes = self._outcomes, []
                await self._send(batch)
            if self._closing:
                return

    async def _complete(self, payload: str) -> None:
        """Record outcomes and, in the same transaction, claim jobs for the free
        slots (none while stopping): the completions may have made steps ready.
        complete_jobs advances their workflows; what it leaves to other processes
        it announces on ``<schema>.workflows``."""
        config = self.config
        limit = 0 if self._stopping else max(0, self._free())
        notices = self._notices
        self._reserved += limit
        try:
            async with self.pools["complete"].connection() as conn:
                claimed = await self.queries.complete_and_claim(
                    conn,
                    config.worker_id,
                    payload,
                    list(config.queues),
                    limit,
                    config.lease_seconds,
                    config.workflow_batch,
                )
        finally:
            self._reserved -= limit
        self._start(claimed, limit, notices)

    async def _send(self, batch: list[Outcome]) -> None:
        payload = _encode_outcomes(batch)
        delay = 0.1
        while True:
            try:
                await self._complete(payload)
                return
            except psycopg.OperationalError as exc:
                # keep the outcomes: the leases hold the jobs until we get through
                log.warning("completing %d jobs failed (%s); retrying", len(batch), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except psycopg.Error as exc:
                # PostgreSQL refused the batch itself (a jsonb cannot hold U+0000):
                # find the culprit, store it in a form it accepts, send the others
                if len(batch) > 1:
                    for item in batch:
                        await self._send([item])
                    return
                fixed = _storable(batch[0], exc)
                if fixed == batch[0]:
                    log.error(
                        "cannot record the outcome of job %s (%s); its lease will expire",
                        batch[0]["id"],
                        exc,
                    )
                    return
                batch = [fixed]
                payload = _encode_outcomes(batch)

    async def _advancer(self) -> None:
        """Advance workflows whose steps this process completed (or when told
        to on ``<schema>.workflows``), in batches of ``workflow_batch``."""
        while True:
            await self._advance_wanted.wait()
            # complete_jobs advanced what it could; what is left (workflows another
            # process held locked) can wait a few milliseconds, so that one call
            # serves several completion batches
            await asyncio.sleep(0.005)
            self._advance_wanted.clear()
            try:
                created = await advance_until_idle(
                    self.pools["advance"].connection, self.queries, self.config.workflow_batch
                )
            except psycopg.Error as exc:
                log.warning("advancing workflows failed (%s); the sweep will retry", exc)
                continue
            if created:
                # the next steps may be ours: claim now rather than after the NOTIFY
                self._may_have_work = True
                self._wake.set()

    async def _flush_all(self, completer: asyncio.Task[None]) -> None:
        """Let the completer finish: a batch it is sending, then what is left
        (cancelling it could lose a batch already taken from the list)."""
        self._closing = True
        self._flush_wanted.set()
        await completer

    # -- heartbeat ---------------------------------------------------------------

    async def _heartbeat(self) -> None:
        config = self.config
        interval = max(0.2, min(config.lease_seconds / 3, 5.0))
        while True:
            await asyncio.sleep(interval)
            if os.getppid() != config.supervisor_pid:
                log.error("worker %s: supervisor is gone; exiting", config.worker_id)
                os._exit(1)
            held = [r.job.id for r in self.executor.running.values()]
            try:
                async with self.pools["heartbeat"].connection() as conn:
                    if held:
                        for job_id in await self.queries.extend(
                            conn, config.worker_id, held, config.lease_seconds
                        ):
                            self._cancel(job_id)
                    await self.queries.recover(conn)
            except psycopg.Error as exc:
                log.warning("heartbeat failed (%s)", exc)

    # -- replacing the process ---------------------------------------------------

    def _replace(self, running: Running, why: str) -> None:
        """A sync job timed out or was cancelled: its thread cannot be stopped."""
        if self._replacing:
            return
        log.warning(
            "job %s (%s) %s while running in a thread: replacing worker process %s",
            running.job.id,
            running.job.func,
            "timed out" if why == "timeout" else "was cancelled",
            self.config.worker_id,
        )
        self._replacing = True
        self._exit_code = EXIT_REPLACE
        self._stopping = True
        self._wake.set()


def _storable(item: Outcome, exc: Exception) -> Outcome:
    """The outcome PostgreSQL refused, in a form it accepts: U+0000 escaped in
    the error's texts; a result that cannot be stored turns the job into a failure."""
    item = dict(item)
    if item.get("result") is not None:
        del item["result"]
        item.update(
            outcome="failed",
            error={
                "type": "ResultNotStorable",
                "message": f"the job's return value cannot be stored in PostgreSQL: {exc}",
            },
        )
    if isinstance(item.get("error"), dict):
        item["error"] = {
            key: value.replace("\x00", "\\x00") if isinstance(value, str) else value
            for key, value in item["error"].items()
        }
    return item


def _encode_outcomes(batch: list[Outcome]) -> str:
    """JSON of a batch; a result that is not JSON turns its job into a failure."""
    try:
        return json.dumps(batch, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        fixed = []
        for item in batch:
            try:
                json.dumps(item, allow_nan=False)
            except (TypeError, ValueError) as exc:
                error = error_info(exc)
                error["message"] = f"the job's return value is not JSON-serialisable: {exc}"
                error["type"] = "ResultNotJSON"
                item = {k: v for k, v in item.items() if k != "result"}
                item.update(outcome="failed", error=error)
            fixed.append(item)
        return json.dumps(fixed, separators=(",", ":"), allow_nan=False)
