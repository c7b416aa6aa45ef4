"""The supervisor: starts N worker processes, replaces those that die, stops
them gracefully.

``Worker`` is an async context manager: the pool runs while the block runs and
drains when it exits. ``run_until_signal()`` is what ``pgdag worker`` uses:
SIGTERM or SIGINT drains (jobs get ``grace_period`` seconds, the rest go back
to pending without losing an attempt), a second SIGINT kills the processes at
once (their leases expire and any process recovers the jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Self

from worker.app import App
from worker.errors import ConfigurationError, PgdagError
from worker.plugin import Plugin, PluginScope
from worker.pool.child import EXIT_REPLACE, EXIT_STARTUP_FAILED, ChildConfig, main
from worker.pool.logs import LogBridge

log = logging.getLogger("pgdag.supervisor")


class WorkerStartupError(PgdagError):
    """A worker process could not start (bad --import module, unreachable database)."""


@dataclass
class _Slot:
    index: int
    process: BaseProcess
    config: ChildConfig
    started: float
    ready: Connection  # the process sends its startup status here, once


class Worker:
    """A pool of ``processes`` worker processes running jobs of ``queues``,
    each running up to ``concurrency`` jobs at once."""

    def __init__(
        self,
        app: App,
        *,
        processes: int = 1,
        queues: Sequence[str] = ("default",),
        concurrency: int = 10,
        imports: Sequence[str] = (),
        grace_period: float = 30.0,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
    ) -> None:
        if processes < 1:
            raise ConfigurationError(f"processes must be >= 1, got {processes}")
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        queues = tuple(q.strip() for q in queues if q.strip())
        if not queues:
            raise ConfigurationError("a worker needs at least one queue")
        if lease_seconds < 1:
            raise ConfigurationError(f"lease_seconds must be >= 1, got {lease_seconds}")
        self.app = app
        self.processes = processes
        self.queues = queues
        self.concurrency = concurrency
        self.imports = tuple(imports)
        self.grace_period = grace_period
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._context = multiprocessing.get_context("spawn")
        self._slots: dict[int, _Slot] = {}
        self._generation = 0
        self._stopping = False
        self._logs: LogBridge | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._plugin_tasks: list[asyncio.Task[None]] = []

    # -- public ------------------------------------------------------------------

    @property
    def worker_ids(self) -> list[str]:
        """Ids of the live worker processes (as recorded on the jobs they claim)."""
        return [slot.config.worker_id for slot in self._slots.values()]

    @property
    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots.values() if slot.process.pid]

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the processes and wait until each is connected and listening."""
        await self.app.open()
        self._logs = LogBridge()
        for index in range(self.processes):
            self._spawn(index)
        try:
            await self._wait_ready(set(self._slots))
        except WorkerStartupError:
            await self.stop(kill=True)
            raise
        self._monitor = asyncio.create_task(self._watch(), name="pgdag-supervisor")
        self._plugin_tasks = [
            asyncio.create_task(self._run_plugin(plugin), name=f"pgdag-{type(plugin).__name__}")
            for plugin in self.app.plugins
            if plugin.get_scope() is PluginScope.WORKER
        ]
        log.info(
            "pool %s: %d process(es) x %d slots on queue(s) %s",
            self.id,
            self.processes,
            self.concurrency,
            ",".join(self.queues),
        )

    async def stop(self, *, kill: bool = False) -> None:
        """Drain (SIGTERM to every process, wait for them) or, with ``kill``,
        SIGKILL them and recover their jobs at once."""
        self._stopping = True
        for task in self._plugin_tasks:
            task.cancel()
        await asyncio.gather(*self._plugin_tasks, return_exceptions=True)
        self._plugin_tasks = []
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
            self._monitor = None
        slots = list(self._slots.values())
        for slot in slots:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid or 0, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + (5 if kill else self.grace_period + 15)
        for slot in slots:
            await asyncio.to_thread(slot.process.join, max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error("worker %s did not stop in time; killing it", slot.config.worker_id)
                slot.process.kill()
                await asyncio.to_thread(slot.process.join, 5)
            if slot.process.exitcode != 0:
                await self._recover(slot)
            slot.ready.close()
        self._slots.clear()
        if self._logs is not None:
            await asyncio.to_thread(self._logs.close)
            self._logs = None

    async def run_until_signal(self) -> None:
        """Run until SIGTERM/SIGINT, then drain; a second SIGINT kills at once."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info(
                    "received %s: draining (Ctrl-C again to stop at once)",
                    signal.Signals(signum).name,
                )
                stop.set()
            elif signum == signal.SIGINT:
                log.warning("second interrupt: killing worker processes")
                for pid in self.pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                os._exit(130)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            if not self._slots:
                await self.start()
            await stop.wait()
            await self.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    def _workflow_batch(self) -> int:
        from worker.plugins.workflow import WorkflowPlugin

        for plugin in self.app.plugins:
            if isinstance(plugin, WorkflowPlugin):
                return plugin.max_workflows_per_run
        return 1000

    async def _run_plugin(self, plugin: Plugin) -> None:
        try:
            await plugin.run(self, self.app)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("plugin %s stopped with an error", type(plugin).__name__)

    # -- processes ---------------------------------------------------------------

    def _spawn(self, index: int) -> None:
        self._generation += 1
        config = ChildConfig(
            dsn=self.app.dsn,
            schema=self.app.schema,
            worker_id=f"{self.id}/{index}.{self._generation}",
            queues=self.queues,
            concurrency=self.concurrency,
            imports=self.imports,
            lease_seconds=self.lease_seconds,
            poll_interval=self.poll_interval,
            grace_period=self.grace_period,
            log_level=logging.getLogger().getEffectiveLevel(),
            workflow_batch=self._workflow_batch(),
            supervisor_pid=os.getpid(),
        )
        assert self._logs is not None
        # A pipe per process, not a shared queue: a process killed while it held
        # a queue's lock would leave the lock taken for every later process.
        reader, writer = self._context.Pipe(duplex=False)
        logs = self._logs.connect()
        process = self._context.Process(
            target=main,
            args=(config, logs, writer),
            name=f"pgdag-worker-{index}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            writer.close()  # the child's copies are the only ones: its exit means EOF
            logs.close()
        self._slots[index] = _Slot(index, process, config, time.monotonic(), reader)

    async def _wait_ready(self, indexes: set[int], timeout: float = 60.0) -> None:
        """Until the processes of ``indexes`` say they are ready; raises
        :class:`WorkerStartupError` when one fails, dies first or takes too long."""
        waiting = {self._slots[i].ready: self._slots[i] for i in indexes}
        deadline = time.monotonic() + timeout
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                names = sorted(slot.config.worker_id for slot in waiting.values())
                raise WorkerStartupError(
                    f"worker processes {names} did not start within {timeout:g}s"
                )
            readable = await asyncio.to_thread(
                multiprocessing.connection.wait, list(waiting), min(left, 0.5)
            )
            for reader in readable:
                slot = waiting.pop(reader)  # type: ignore[call-overload]
                worker_id = slot.config.worker_id
                try:
                    status = slot.ready.recv()
                except EOFError:  # it died first (e.g. a program without a __main__ guard)
                    await asyncio.to_thread(slot.process.join, 5)
                    raise WorkerStartupError(
                        f"worker process {worker_id} exited with code "
                        f"{slot.process.exitcode} before it was ready"
                    ) from None
                if status != "ready":
                    raise WorkerStartupError(
                        f"worker process {worker_id} failed to start: {status}"
                    )

    async def _watch(self) -> None:
        """Replace processes that die; recover the jobs they held at once."""
        while not self._stopping:
            sentinels = {slot.process.sentinel: slot for slot in self._slots.values()}
            ready = await asyncio.to_thread(multiprocessing.connection.wait, list(sentinels), 0.5)
            for sentinel in ready:
                slot = sentinels[sentinel]  # type: ignore[index]
                slot.process.join()
                slot.ready.close()
                code = slot.process.exitcode
                if self._stopping:
                    return
                if code == EXIT_REPLACE:
                    log.info(
                        "worker %s replaced itself (abandoned a sync job)", slot.config.worker_id
                    )
                else:
                    log.error(
                        "worker %s died (exit code %s); recovering its jobs",
                        slot.config.worker_id,
                        code,
                    )
                await self._recover(slot)
                if code == EXIT_STARTUP_FAILED or time.monotonic() - slot.started < 1:
                    await asyncio.sleep(1)  # do not spin on a process that cannot live
                self._spawn(slot.index)
                try:
                    await self._wait_ready({slot.index})
                except WorkerStartupError as exc:
                    # not the whole pool's end: one that died is replaced next round
                    log.error("replacing worker %s: %s", slot.config.worker_id, exc)

    async def _recover(self, slot: _Slot) -> None:
        try:
            async with self.app.connection() as conn:
                recovered = await self.app.queries.recover(conn, slot.config.worker_id)
        except Exception as exc:  # noqa: BLE001 - leases expire anyway
            log.warning(
                "could not recover jobs of %s now (%s); their leases will expire",
                slot.config.worker_id,
                exc,
            )
            return
        if recovered:
            log.warning("recovered %d job(s) of %s", len(recovered), slot.config.worker_id)
