"""Errors an API endpoint raises on purpose; the server turns each into a JSON
response ``{"error": message}`` with the error's status code."""

from __future__ import annotations

from worker.errors import PgdagError


class ApiError(PgdagError):
    """A request the API refuses; ``status`` is the HTTP status code."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """A malformed id, an unknown filter value, a cursor this API did not give out."""

    status = 400


class NotFound(ApiError):
    """A well-formed id that names nothing."""

    status = 404
