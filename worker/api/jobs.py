"""The job part of the HTTP API, mounted by every server:

- ``GET /api/v1/jobs``: newest first; ``?state=`` and ``?queue=`` filter (repeat
  them or separate values with commas), ``?limit=`` (default 50, at most 500)
  and ``?cursor=`` paginate;
- ``GET /api/v1/jobs/summary``: how many jobs each queue has in each state;
- ``GET /api/v1/jobs/{id}``: one job, with kwargs, result and every error.

It has the shape of a plugin's API component (``name()``, ``routes()``,
endpoints taking ``(request, *, app, worker)``), like ``WorkflowApiPlugin``.
"""

from __future__ import annotations

from typing import Any

from worker.api import params
from worker.api.encode import jsonable
from worker.api.errors import NotFound
from worker.app import App
from worker.job import JobState

STATES = [state.value for state in JobState]


class JobsApiPlugin:
    """API plugin for jobs."""

    def name(self) -> str:
        return "jobs"

    def routes(self) -> list[dict[str, Any]]:
        return [
            {"path": "/api/v1/jobs", "endpoint": self.get_jobs, "methods": ["GET"]},
            # before /{id}, which would otherwise take "summary" for a (malformed) id
            {"path": "/api/v1/jobs/summary", "endpoint": self.get_summary, "methods": ["GET"]},
            {"path": "/api/v1/jobs/{id}", "endpoint": self.get_job, "methods": ["GET"]},
        ]

    @staticmethod
    async def get_jobs(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """Jobs, newest first, without kwargs, result or errors (see ``get_job``)."""
        query = request.query_params
        params.check_known(query, ["state", "queue", "limit", "cursor"])
        states = params.choices(query, "state", STATES)
        queues = params.values(query, "queue") or None
        return await params.newest_first(
            app,
            query,
            "jobs",
            lambda conn, before, limit: app.queries.list_jobs(
                conn, states=states, queues=queues, before=before, limit=limit
            ),
        )

    @staticmethod
    async def get_summary(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """``{"queues": {queue: {state: count}}, "states": {state: count}, "total": n}``;
        states a queue has no job in are left out."""
        params.check_known(request.query_params, [])
        async with app.connection() as conn:
            counts = await app.queries.job_counts(conn)
        queues: dict[str, dict[str, int]] = {}
        states: dict[str, int] = {}
        for queue, state, count in counts:
            queues.setdefault(queue, {})[state] = count
            states[state] = states.get(state, 0) + count
        return {"queues": queues, "states": states, "total": sum(states.values())}

    @staticmethod
    async def get_job(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """One job by id: 400 for a malformed id, 404 for an unknown one."""
        params.check_known(request.query_params, [])
        raw = request.path_params["id"]
        key = params.uuid(raw, "job id")
        async with app.connection() as conn:
            row = await app.queries.job(conn, key)
        if row is None:
            raise NotFound(f"no job with id {raw}")
        return jsonable(row)
