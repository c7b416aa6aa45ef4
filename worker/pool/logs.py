"""Logs of every worker process reach the supervisor's handlers.

The supervisor owns a :class:`multiprocessing_logging.MultiProcessingHandler`
used for its queue and receiving thread: each child sends its records there
(:class:`ToSupervisor`), and the thread hands them to the supervisor's own
logger tree, so whatever handlers the application configured see them, with
the child's process name and pid. Inside a job, records also carry ``job_id``
and ``job_func`` (from a context variable the executor sets).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.queues
import threading
from typing import Any

from multiprocessing_logging import MultiProcessingHandler

from worker.job import current_job


class JobContext(logging.Filter):
    """Adds ``job_id`` and ``job_func`` to every record ("-" outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            running = current_job()
            record.job_id, record.job_func = (running.id, running.func) if running else ("-", "-")
        return True


class _ToLoggerTree(logging.Handler):
    """Supervisor side: a record from a child goes through the logger it was
    logged with, reaching the same handlers as the supervisor's own records."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


class _SpawnSafeReceiver(MultiProcessingHandler):
    """multiprocessing-logging's receiver, with its queue made in the spawn
    context: its own constructor uses the default (fork) context, whose locks
    cannot be handed to spawned processes."""

    def __init__(self, name: str, sub_handler: logging.Handler) -> None:
        logging.Handler.__init__(self)
        self.sub_handler = sub_handler
        self.queue = multiprocessing.get_context("spawn").Queue(-1)
        self._is_closed = False
        self._receive_thread = threading.Thread(target=self._receive, name=name, daemon=True)
        self._receive_thread.start()


class LogBridge:
    """Created in the supervisor; :attr:`queue` goes to every child."""

    def __init__(self) -> None:
        self._handler = _SpawnSafeReceiver("pgdag-log-receiver", _ToLoggerTree())

    @property
    def queue(self) -> multiprocessing.queues.Queue[Any]:
        return self._handler.queue

    def close(self) -> None:
        self._handler.close()


class ToSupervisor(logging.Handler):
    """Child side: sends records (message and traceback already rendered, so
    nothing unpicklable travels) to the supervisor."""

    def __init__(self, queue: multiprocessing.queues.Queue[Any]) -> None:
        super().__init__()
        self._queue = queue
        self.addFilter(JobContext())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg = record.getMessage()
            record.args = None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self._queue.put_nowait(record)
        except Exception:  # noqa: BLE001 - logging must never raise (handleError reports)
            self.handleError(record)


def install_in_child(queue: multiprocessing.queues.Queue[Any], level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ToSupervisor(queue))
    root.setLevel(level)
