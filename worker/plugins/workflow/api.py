"""The workflow part of the HTTP API.

``WorkflowPlugin.api_plugin()`` names this class; the server (``worker.api``)
mounts its :meth:`~WorkflowApiPlugin.routes`:

- ``GET /api/v1/workflows``: newest first, without their steps; ``?state=``
  and ``?name=`` filter, ``?limit=`` (default 50, at most 500) and ``?cursor=``
  paginate;
- ``GET /api/v1/workflows/{id}``: one workflow with its steps (state,
  dependencies, job id, attempts, timings, errors) and a layered layout of its
  DAG (each step's ``layer`` and ``order`` in it) to draw it; 400 for a malformed
  id, 404 for an unknown one.

Endpoints take a request with ``path_params`` and ``query_params`` mappings
(Starlette's ``Request`` has both) and return JSON-ready dicts.
"""

from __future__ import annotations

from typing import Any

from worker.api import params
from worker.api.encode import jsonable
from worker.api.errors import NotFound
from worker.app import App
from worker.plugins.workflow import Workflow
from worker.plugins.workflow.layout import layered_layout

STATES = [state.value for state in Workflow.State]


class WorkflowApiPlugin:
    """API plugin for workflows."""

    def name(self) -> str:
        return "workflows"

    def routes(self) -> list[dict[str, Any]]:
        return [
            {"path": "/api/v1/workflows", "endpoint": self.get_workflows, "methods": ["GET"]},
            {
                "path": "/api/v1/workflows/{id}",
                "endpoint": self.get_workflow,
                "methods": ["GET"],
            },
        ]

    @staticmethod
    async def get_workflows(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """Get all known workflows: a page of them, newest first."""
        query = request.query_params
        params.check_known(query, ["state", "name", "limit", "cursor"])
        states = params.choices(query, "state", STATES)
        name = params.text(query, "name")
        return await params.newest_first(
            app,
            query,
            "workflows",
            lambda conn, before, limit: app.queries.list_workflows(
                conn, states=states, name=name, before=before, limit=limit
            ),
        )

    @staticmethod
    async def get_workflow(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """Get a single workflow by ID, with its steps and their layout."""
        params.check_known(request.query_params, [])
        raw = request.path_params["id"]
        key = params.uuid(raw, "workflow id")
        async with app.connection() as conn:
            row = await app.queries.workflow(conn, key)
            now = await app.queries.server_now(conn)
        if row is None:
            raise NotFound(f"no workflow with id {raw}")
        steps = row["steps"]
        layout = layered_layout({s["step_id"]: s["dependencies"] for s in steps})
        for step in steps:
            step["layer"], step["order"] = layout[step["step_id"]]
        return jsonable({**row, "now": now})
