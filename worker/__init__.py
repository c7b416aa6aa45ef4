"""pgdag: a PostgreSQL-backed job queue whose DAG workflows advance inside PostgreSQL."""

from worker.app import App
from worker.errors import (
    ConfigurationError,
    InvalidJobError,
    JobNotFoundError,
    MigrationError,
    PgdagError,
)
from worker.job import CurrentJob, IsAJob, Job, JobState, QueuedJob, Retry, current_job, job
from worker.migrate import MigrationReport
from worker.pool import Worker, WorkerStartupError

__all__ = [
    "App",
    "ConfigurationError",
    "CurrentJob",
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
    "current_job",
    "job",
]
