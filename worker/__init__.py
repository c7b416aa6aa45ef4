"""pgdag: a PostgreSQL-backed job queue whose DAG workflows advance inside PostgreSQL."""

from worker.app import App
from worker.errors import (
    ConfigurationError,
    InvalidJobError,
    JobNotFoundError,
    MigrationError,
    PgdagError,
)
from worker.job import IsAJob, Job, JobState, QueuedJob, Retry, job
from worker.migrate import MigrationReport
from worker.pool import Worker, WorkerStartupError

__all__ = [
    "App",
    "ConfigurationError",
    "InvalidJobError",
    "IsAJob",
    "Job",
    "JobNotFoundError",
    "JobState",
    "MigrationError",
    "MigrationReport",
    "PgdagError",
    "QueuedJob",
    "Retry",
    "Worker",
    "WorkerStartupError",
    "job",
]
