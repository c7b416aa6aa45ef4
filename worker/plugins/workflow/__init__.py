"""Workflows: DAGs of jobs whose advancement runs inside PostgreSQL.

Build a :class:`Workflow` (or a :class:`Sequence`), push it with
:meth:`WorkflowPlugin.push`, and let the worker pool run it: when a step's job
finishes, the call that records its completion (``complete_jobs``, PL/pgSQL)
advances its workflow in the same transaction (``FOR UPDATE SKIP LOCKED``, up to
``max_workflows_per_run`` workflows a call) and so decides what runs next; a
workflow another process held locked is advanced by ``advance_workflows`` when
the worker processes are notified. :class:`WorkflowPlugin` adds a safety sweep
every ``polling_interval`` seconds and pruning of finished workflows.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self, TextIO
from uuid import UUID

from psycopg import sql

from worker.errors import InvalidJobError
from worker.job import IsAJob, Job, JobState, QueuedJob, as_job, dump_json, uuid7
from worker.plugin import Plugin, PluginScope
from worker.plugins.workflow.advance import advance_until_idle
from worker.plugins.workflow.dot import write_dot
from worker.plugins.workflow.graph import InvalidWorkflowError, check_graph
from worker.rule import Condition, Rule

if TYPE_CHECKING:
    from worker.app import App

__all__ = [
    "InvalidWorkflowError",
    "Sequence",
    "Workflow",
    "WorkflowPlugin",
    "WorkflowStep",
]

log = logging.getLogger("pgdag.workflow")


@dataclass
class WorkflowStep:
    job: Job | IsAJob
    """The job to execute when this step is ready."""
    step_id: str
    """The unique ID of the step."""
    dependencies: list[str] = field(default_factory=list)
    """A list of step IDs that this step depends on."""
    state: QueuedJob.State | None = QueuedJob.State.PENDING
    """The current state of the step (its job's state)."""
    job_id: str | None = None
    """The ID of the job created for this step, once it was enqueued."""


@dataclass
class Workflow:
    name: str
    steps: dict[str, WorkflowStep] = field(default_factory=dict)
    """The steps of the workflow, keyed by step ID, in the order they were added."""
    state: Workflow.State = field(default_factory=lambda: Workflow.State.PENDING)
    """The current state of the workflow."""
    id: str = field(default_factory=uuid7)
    """The unique ID of this run of the workflow."""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    class State(enum.Enum):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    def add(
        self,
        step_id: str | Job | IsAJob,
        job: Job | IsAJob | str,
        dependencies: list[str] | None = None,
    ) -> Workflow:
        """Add a step: ``add("step_1", job)``, ``add("step_2", job, ["step_1"])``.
        The reference's other order, ``add(job, "step_1", ...)``, works too."""
        if isinstance(job, str) and not isinstance(step_id, str):
            step_id, job = job, step_id
        if not isinstance(step_id, str) or not step_id:
            raise InvalidWorkflowError(
                f"workflow {self.name!r}: step id {step_id!r} must be a non-empty string"
            )
        if step_id in self.steps:
            raise InvalidWorkflowError(f"workflow {self.name!r}: duplicate step id {step_id!r}")
        try:
            as_job(job)  # type: ignore[arg-type]
        except TypeError as exc:
            raise InvalidWorkflowError(f"workflow {self.name!r}, step {step_id!r}: {exc}") from None
        self.steps[step_id] = WorkflowStep(
            job=job,  # type: ignore[arg-type]
            step_id=step_id,
            dependencies=list(dependencies or []),
        )
        return self

    def add_group(
        self, jobs: list[tuple[str, Job | IsAJob]], dependencies: list[str] | None = None
    ) -> Workflow:
        """Add several steps that share the same dependencies."""
        for step_id, job in jobs:
            self.add(step_id, job, dependencies)
        return self

    @property
    def is_complete(self) -> bool:
        """True once the workflow finished, successfully or not."""
        return self.state in (Workflow.State.COMPLETED, Workflow.State.FAILED)

    @property
    def is_running(self) -> bool:
        return self.state == Workflow.State.RUNNING

    @property
    def steps_by_state(self) -> dict[QueuedJob.State, list[WorkflowStep]]:
        grouped: dict[QueuedJob.State, list[WorkflowStep]] = {}
        for step in self.steps.values():
            grouped.setdefault(step.state or JobState.PENDING, []).append(step)
        return grouped

    def _payload(self) -> str:
        """Validated JSON for push_workflow; raises InvalidWorkflowError naming the culprit."""
        if not isinstance(self.name, str) or not self.name:
            raise InvalidWorkflowError(f"workflow name {self.name!r} must be a non-empty string")
        try:
            UUID(str(self.id))
        except ValueError:
            raise InvalidWorkflowError(
                f"workflow {self.name!r}: id {self.id!r} is not a UUID"
            ) from None
        for key, step in self.steps.items():
            if key != step.step_id:
                raise InvalidWorkflowError(
                    f"workflow {self.name!r}: the step stored under {key!r} "
                    f"has step_id {step.step_id!r}"
                )
        check_graph(self.name, {k: s.dependencies for k, s in self.steps.items()})
        steps = [
            {"step_id": s.step_id, "job": as_job(s.job).pack(), "dependencies": s.dependencies}
            for s in self.steps.values()
        ]
        try:
            return dump_json({"id": str(self.id), "name": self.name, "steps": steps}, "workflow")
        except InvalidJobError:
            for step in steps:  # name the culprit
                try:
                    dump_json(step["job"], "the job's kwargs or meta")
                except InvalidJobError as exc:
                    raise InvalidWorkflowError(
                        f"workflow {self.name!r}, step {step['step_id']!r}: {exc}"
                    ) from None
            raise


class Sequence:
    """A workflow where each job depends on the one before it."""

    def __init__(self, name: str, jobs: list[Job | IsAJob] | None = None) -> None:
        self.name = name
        self.jobs: list[Job | IsAJob] = list(jobs or [])

    def add(self, job: Job | IsAJob) -> Self:
        self.jobs.append(job)
        return self

    def to_workflow(self) -> Workflow:
        workflow = Workflow(self.name)
        previous: str | None = None
        for index, job in enumerate(self.jobs, start=1):
            step_id = f"step_{index}"
            workflow.add(step_id, job, [previous] if previous else None)
            previous = step_id
        return workflow

    async def push(self, app: App) -> str:
        """Push the sequence as a workflow; returns its ID."""
        return await WorkflowPlugin.push(app, self.to_workflow())


class _Age(Rule):
    """Seconds since the workflow finished (NULL, so never matching, while it runs)."""

    def __init__(self) -> None:
        super().__init__("completed_at")

    def to_sql(self) -> sql.Composable:
        return sql.SQL("EXTRACT(EPOCH FROM (now() - {}))").format(sql.Identifier("completed_at"))


_DEFAULT_PRUNING_RULE = _Age() > 86400  # finished for a day
_FINISHED = frozenset({"completed", "failed"})


class WorkflowPlugin(Plugin):
    """Support for dependency-based workflows (see the module docstring)."""

    class Rules:
        Age = _Age

        class State(Rule):
            def __init__(self) -> None:
                super().__init__("state")

        class Name(Rule):
            def __init__(self) -> None:
                super().__init__("name")

    def __init__(
        self,
        *,
        polling_interval: int = 1,
        max_workflows_per_run: int = 1000,
        pruning_rule: Rule = _DEFAULT_PRUNING_RULE,
    ) -> None:
        if polling_interval <= 0:
            raise ValueError(f"polling_interval must be > 0, got {polling_interval}")
        if max_workflows_per_run < 1:
            raise ValueError(f"max_workflows_per_run must be >= 1, got {max_workflows_per_run}")
        if not isinstance(pruning_rule, Condition):
            raise TypeError("pruning_rule must be a condition, e.g. Rules.Age() > 86400")
        self.polling_interval = polling_interval
        self.max_workflows_per_run = max_workflows_per_run
        self.pruning_rule = pruning_rule

    # -- plugin hooks --------------------------------------------------------------

    @classmethod
    def get_scope(cls) -> PluginScope:
        return PluginScope.WORKER

    def api_plugin(self) -> str | None:
        return "worker.plugins.workflow.api.WorkflowApiPlugin"

    def migrate_key(self) -> str:
        """Workflow tables are part of pgdag's own numbered migrations (``sql/``)."""
        return "workflow"

    def migrate_package(self) -> str:
        return "worker"

    async def run(self, worker: Any, app: App) -> None:
        """The safety sweep: advance whatever completions did not (a process
        died between completing and advancing, a notification was lost)."""
        while True:
            await asyncio.sleep(self.polling_interval)
            try:
                await advance(app, self.max_workflows_per_run)
            except Exception as exc:  # noqa: BLE001 - the sweep must outlive a bad moment
                log.warning("workflow sweep failed (%s); trying again", exc)

    async def cleanup(self, app: App) -> int | None:
        """Delete finished workflows matching ``pruning_rule``, 1,000 at a time.
        Pending and running workflows are never touched."""
        removed = 0
        while True:
            async with app.connection() as conn:
                count = await app.queries.delete_finished_workflows(
                    conn, self.pruning_rule.to_sql(), 1000
                )
            removed += count
            if count < 1000:
                return removed

    async def process_workflow(self, app: App, workflow: Workflow) -> None:
        """One advancement of the given workflow (ready steps get their jobs)."""
        key = UUID(str(workflow.id))
        async with app.connection() as conn:
            await conn.execute(app.queries.nudge_workflow, (key,))
        await advance(app, 1, [key])

    # -- API -------------------------------------------------------------------------

    @classmethod
    async def push(cls, app: App, workflow: Workflow) -> str:
        """Validate and store the workflow and enqueue its root steps, in one call.
        An existing ID is updated; steps that already have jobs are not re-run."""
        return (await cls.push_many(app, [workflow]))[0]

    @classmethod
    async def push_many(cls, app: App, workflows: list[Workflow]) -> list[str]:
        """:meth:`push` for many workflows in one round trip; returns their IDs.
        Every workflow is validated first: one bad graph and nothing is written."""
        if not workflows:
            return []
        payload = "[" + ",".join(w._payload() for w in workflows) + "]"
        async with app.connection() as conn:
            ids = await app.queries.push_workflows(conn, payload)
        return [str(i) for i in ids]

    @classmethod
    async def fetch_workflow(cls, app: App, id_: str) -> Workflow | None:
        found = await cls.fetch_workflows(app, ids=[id_], limit=1)
        return found[0] if found else None

    @staticmethod
    async def fetch_workflows(
        app: App,
        *,
        states: list[str] | None = None,
        ids: list[str] | None = None,
        limit: int = 100,
    ) -> list[Workflow]:
        keys = [_uuid(i) for i in ids] if ids is not None else None
        async with app.connection() as conn:
            rows = await app.queries.fetch_workflows(conn, states=states, ids=keys, limit=limit)
        return [_workflow(row) for row in rows]

    @staticmethod
    def generate_dot(workflow: Workflow, output: TextIO) -> None:
        write_dot(workflow, output)

    @classmethod
    async def wait_for_workflow(
        cls,
        app: App,
        workflow_id: str,
        *,
        interval: int = 1,
        timeout: float | int | None = None,
    ) -> Workflow:
        """Wait until the workflow completed or failed, woken by LISTEN/NOTIFY
        (``interval`` is the fallback poll). Raises ``asyncio.TimeoutError``
        after ``timeout`` seconds and ``KeyError`` for an unknown ID."""
        key = _uuid(workflow_id)
        workflow = await cls.fetch_workflow(app, str(key))
        if workflow is None:
            raise KeyError(f"no workflow with id {workflow_id}")
        if workflow.is_complete:
            return workflow

        async def states(ids: list[UUID]) -> dict[UUID, str]:
            async with app.connection() as conn:
                return await app.queries.workflow_states(conn, ids)

        watcher = await app.watcher("workflows", states, _FINISHED, interval)
        async with asyncio.timeout(timeout):
            await watcher.wait(key)
        workflow = await cls.fetch_workflow(app, str(key))
        if workflow is None:
            raise KeyError(f"workflow {workflow_id} was deleted while waiting for it")
        return workflow


async def advance(app: App, limit: int, ids: list[UUID] | None = None) -> int:
    """Advance due workflows until none is left; returns the jobs created."""
    return await advance_until_idle(app.connection, app.queries, limit, ids)


def _uuid(value: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise KeyError(f"{value!r} is not a workflow id (a UUID)") from None


def _workflow(row: dict[str, Any]) -> Workflow:
    steps = {}
    for raw in row["steps"]:
        steps[raw["step_id"]] = WorkflowStep(
            job=Job.unpack(raw["job"]),
            step_id=raw["step_id"],
            dependencies=list(raw["dependencies"]),
            state=JobState(raw["state"]),
            job_id=raw["job_id"],
        )
    return Workflow(
        name=row["name"],
        steps=steps,
        state=Workflow.State(row["state"]),
        id=str(row["id"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
