"""``pgdag workflows list|show|dot``: looking at workflows from a terminal."""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from datetime import datetime

from worker.app import App
from worker.errors import PgdagError
from worker.plugins.workflow import Workflow, WorkflowPlugin


def add_commands(commands: argparse._SubParsersAction, connection_args: object) -> None:
    parser = commands.add_parser("workflows", help="list and inspect workflows")
    sub = parser.add_subparsers(dest="workflows_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="the newest workflows, with state and progress")
    connection_args(listing)  # type: ignore[operator]
    listing.add_argument("--state", action="append", choices=[s.value for s in Workflow.State])
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", help="one workflow: its steps, states, job ids, timings")
    connection_args(show)  # type: ignore[operator]
    show.add_argument("id")
    show.set_defaults(handler=_show)

    dot = sub.add_parser("dot", help="one workflow as Graphviz DOT (stdout), or --svg FILE")
    connection_args(dot)  # type: ignore[operator]
    dot.add_argument("id")
    dot.add_argument("--svg", metavar="FILE", help="render to SVG with Graphviz's dot")
    dot.set_defaults(handler=_dot)


class WorkflowNotFound(PgdagError):
    pass


async def _fetch(args: argparse.Namespace) -> Workflow:
    async with App(args.dsn, schema=args.schema) as app:
        try:
            workflow = await WorkflowPlugin.fetch_workflow(app, args.id)
        except KeyError as exc:
            raise WorkflowNotFound(str(exc.args[0])) from None
    if workflow is None:
        raise WorkflowNotFound(f"no workflow with id {args.id}")
    return workflow


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


async def _list(args: argparse.Namespace) -> int:
    async with App(args.dsn, schema=args.schema) as app:
        workflows = await WorkflowPlugin.fetch_workflows(app, states=args.state, limit=args.limit)
    if not workflows:
        print("no workflows")
        return 0
    rows = [
        (
            w.id,
            w.name,
            w.state.value,
            f"{sum(s.state is not None and s.state.value == 'succeeded' for s in w.steps.values())}"
            f"/{len(w.steps)}",
            _when(w.created_at),
        )
        for w in workflows
    ]
    _table(["id", "name", "state", "done", "created"], rows)
    return 0


async def _show(args: argparse.Namespace) -> int:
    workflow = await _fetch(args)
    print(f"workflow {workflow.name} ({workflow.id}): {workflow.state.value}")
    print(f"created {_when(workflow.created_at)}, updated {_when(workflow.updated_at)}")
    timings = await _step_timings(args, workflow)
    rows = []
    for step in workflow.steps.values():
        started, completed = timings.get(step.step_id, (None, None))
        took = f"{(completed - started).total_seconds():.3f}s" if started and completed else "-"
        rows.append(
            (
                step.step_id,
                step.state.value if step.state else "-",
                step.job_id or "-",
                ",".join(step.dependencies) or "-",
                _when(started),
                took,
            )
        )
    _table(["step", "state", "job", "depends on", "started", "took"], rows)
    return 0


async def _step_timings(
    args: argparse.Namespace, workflow: Workflow
) -> dict[str, tuple[datetime | None, datetime | None]]:
    async with App(args.dsn, schema=args.schema) as app, app.connection() as conn:
        return await app.queries.step_timings(conn, workflow.id)


async def _dot(args: argparse.Namespace) -> int:
    workflow = await _fetch(args)
    text = io.StringIO()
    WorkflowPlugin.generate_dot(workflow, text)
    if not args.svg:
        sys.stdout.write(text.getvalue())
        return 0
    return _render_svg(text.getvalue(), args.svg)


def _render_svg(dot_text: str, path: str) -> int:
    dot = shutil.which("dot")
    if dot is None:
        print(
            "pgdag: error: --svg needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz); without --svg the DOT text is printed",
            file=sys.stderr,
        )
        return 1
    subprocess.run([dot, "-Tsvg", "-o", path], input=dot_text, text=True, check=True)
    print(f"wrote {path}")
    return 0


def _table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
