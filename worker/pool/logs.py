"""Logs of every worker process reach the supervisor's handlers.

In each child, multiprocessing-logging's ``MultiProcessingHandler`` renders
every record (message and traceback, so nothing unpicklable travels) and queues
it; its thread sends it over a pipe of the child's own to the supervisor
(:func:`install_in_child`), so logging never waits for the pipe. In the
supervisor, one thread receives from every pipe and hands each record to the
logger it was logged with, so whatever handlers the application configured see
them, with the child's process name and pid. Inside a job, records also carry
``job_id`` and ``job_func`` (from a context variable the executor sets).

Why not multiprocessing-logging's usual set-up, one queue shared by every
process: a multiprocessing queue has a lock shared by its writers, and a process
killed while sending (``kill -9``, a job calling ``os._exit``) would keep it
taken forever, silencing every other process. Here each child's queue is its
own and the pipe is per process, so a process that dies takes at most its own
last records with it.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection, wait

from multiprocessing_logging import MultiProcessingHandler

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


class _PipeSender(logging.Handler):
    """Child side, in multiprocessing-logging's thread: sends a rendered record
    over this process's pipe to the supervisor."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        self.addFilter(JobContext())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._conn.send(record)
        except OSError:
            raise  # the supervisor is gone: multiprocessing-logging stops its thread
        except Exception:  # noqa: BLE001 - e.g. an unpicklable `extra` value: drop it
            self.handleError(record)


def install_in_child(conn: Connection, level: int) -> None:
    """Route the child's records to the supervisor: multiprocessing-logging's
    handler renders each record (message, traceback) and queues it, and its
    thread hands it to :class:`_PipeSender`, so a logging call never waits for
    the pipe. Its queue lives in this process only; no lock is shared with any
    other process. At exit, :func:`logging.shutdown` closes the handler, which
    sends what is queued first."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    # The handler's queue never leaves this process: make it in the fork context,
    # whose semaphores are unlinked at once. (In the spawn context they are left to
    # the resource tracker, which complains of "leaked semaphores" when a worker
    # process ends with os._exit.) Worker processes start no processes of their own.
    multiprocessing.set_start_method("fork", force=True)
    # the filters of the sender are the handler's own: they run in the logging
    # call, where the job's context variables are set
    root.addHandler(MultiProcessingHandler("pgdag-log-feeder", sub_handler=_PipeSender(conn)))
    root.setLevel(level)
