"""The worker pool: a supervisor and N worker processes."""

from worker.pool.supervisor import Worker, WorkerStartupError

__all__ = ["Worker", "WorkerStartupError"]
