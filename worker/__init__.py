"""pgdag: a PostgreSQL-backed job queue whose DAG workflows advance inside PostgreSQL."""

from worker.app import App
from worker.errors import ConfigurationError, MigrationError, PgdagError
from worker.migrate import MigrationReport

__all__ = ["App", "ConfigurationError", "MigrationError", "MigrationReport", "PgdagError"]
