"""The workflow part of the HTTP API.

``WorkflowPlugin.api_plugin()`` names this class. Its endpoints take a request
object with ``path_params`` and ``query_params`` mappings (Starlette's
``Request`` has both) and return JSON-ready dicts; the server that mounts
:meth:`WorkflowApiPlugin.routes` turns them into responses.
"""

from __future__ import annotations

from typing import Any

from worker.app import App
from worker.plugins.workflow import Workflow, WorkflowPlugin


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
        """Known workflows, newest first (``?state=`` filters, ``?limit=`` caps, at most 500)."""
        params = request.query_params
        states = params.getlist("state") if hasattr(params, "getlist") else params.get("state")
        if isinstance(states, str):
            states = [states]
        limit = min(int(params.get("limit", 100)), 500)
        workflows = await WorkflowPlugin.fetch_workflows(app, states=states or None, limit=limit)
        return {"workflows": [serialise(w) for w in workflows]}

    @staticmethod
    async def get_workflow(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        """One workflow by id; raises ``KeyError`` for an unknown or malformed id."""
        workflow = await WorkflowPlugin.fetch_workflow(app, request.path_params["id"])
        if workflow is None:
            raise KeyError(f"no workflow with id {request.path_params['id']}")
        return serialise(workflow)


def serialise(workflow: Workflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "name": workflow.name,
        "state": workflow.state.value,
        "created_at": workflow.created_at.isoformat() if workflow.created_at else None,
        "updated_at": workflow.updated_at.isoformat() if workflow.updated_at else None,
        "steps": [
            {
                "step_id": step.step_id,
                "state": step.state.value if step.state else None,
                "job_id": step.job_id,
                "dependencies": step.dependencies,
            }
            for step in workflow.steps.values()
        ],
    }
