"""Logs of every worker process reach the supervisor's handlers.

Each worker process gets a pipe of its own to the supervisor
(:meth:`LogBridge.connect`). In the child, :class:`ToSupervisor` renders each
record (message and traceback, so nothing unpicklable travels) and a feeder
thread sends it, so logging never waits for the pipe. In the supervisor, one
thread receives from every pipe and hands each record to the logger it was
logged with, so whatever handlers the application configured see them, with
the child's process name and pid. Inside a job, records also carry ``job_id``
and ``job_func`` (from a context variable the executor sets).

Why a pipe per process and not one queue shared by all: a multiprocessing
queue has a lock shared by its writers, and a process killed while sending
(``kill -9``, a job calling ``os._exit``) would keep it taken forever,
silencing every other process. With a pipe each, a process that dies takes
at most its own last records with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from multiprocessing.connection import Connection, wait

from worker.job import current_job

log = logging.getLogger("pgdag.logs")


class JobContext(logging.Filter):
    """Adds ``job_id`` and ``job_func`` to every record ("-" outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            running = current_job()
            record.job_id, record.job_func = (running.id, running.func) if running else ("-", "-")
        return True


def _to_logger_tree(record: logging.LogRecord) -> None:
    """Supervisor side: a record from a child goes through the logger it was
    logged with, reaching the same handlers as the supervisor's own records."""
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


class LogBridge:
    """Created in the supervisor; :meth:`connect` gives the end a new child
    writes to."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._readers: list[Connection] = []
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(
            target=self._receive, name="pgdag-log-receiver", daemon=True
        )
        self._thread.start()

    def connect(self) -> Connection:
        """A new pipe: pass the returned end to one child process, then close
        it in the supervisor (the child's exit then ends the pipe)."""
        reader, writer = self._context.Pipe(duplex=False)
        with self._lock:
            self._readers.append(reader)
        return writer

    def close(self) -> None:
        """Deliver what the (stopped) children sent, then stop receiving."""
        self._closing = True
        self._thread.join(10)

    def _receive(self) -> None:
        while True:
            with self._lock:
                readers = list(self._readers)
            if not readers:
                if self._closing:
                    break
                time.sleep(0.2)
                continue
            ready = wait(readers, 0.2)
            if not ready and self._closing:
                break
            for reader in ready:
                assert isinstance(reader, Connection)
                try:
                    record = reader.recv()
                except (EOFError, OSError):  # the child is gone
                    with self._lock:
                        self._readers.remove(reader)
                    reader.close()
                    continue
                except Exception:  # one bad record must not stop the others
                    log.exception("unreadable log record from a worker process")
                    continue
                try:
                    _to_logger_tree(record)
                except Exception:  # nor a failing handler
                    log.exception("handling a log record of a worker process failed")
        with self._lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()


class ToSupervisor(logging.Handler):
    """Child side: renders records and queues them for a feeder thread that
    sends them to the supervisor."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self._pending: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="pgdag-log-feeder", daemon=True)
        self._feeder.start()
        self.addFilter(JobContext())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self._pending.put(record)
        except Exception:  # noqa: BLE001 - logging must never raise (handleError reports)
            self.handleError(record)

    def _feed(self) -> None:
        while (record := self._pending.get()) is not None:
            try:
                self._conn.send(record)
            except OSError:  # the supervisor is gone
                return
            except Exception:  # noqa: BLE001 - e.g. an unpicklable `extra` value: drop it
                continue

    def close(self) -> None:
        """Send what is queued (waiting a second at most: the supervisor may be
        gone); :func:`logging.shutdown` calls this before the process exits."""
        self._pending.put(None)
        self._feeder.join(1.0)
        super().close()


def install_in_child(conn: Connection, level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ToSupervisor(conn))
    root.setLevel(level)
