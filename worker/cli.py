"""The ``pgdag`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from worker.app import App
from worker.errors import PgdagError
from worker.logconfig import configure as configure_logging
from worker.pool import Worker


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        default=None,
        help="PostgreSQL connection string (default: $PGDAG_DSN, else the embedded server)",
    )
    parser.add_argument("--schema", default="pgdag", help="schema holding pgdag's tables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgdag", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser("migrate", help="apply migrations and install functions")
    _connection_args(migrate)
    migrate.set_defaults(handler=_migrate)

    worker = commands.add_parser("worker", help="run a pool of worker processes")
    _connection_args(worker)
    worker.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    worker.add_argument(
        "--queues", default="default", help="comma-separated queues to run (default: default)"
    )
    worker.add_argument(
        "--concurrency", type=int, default=10, help="jobs each process runs at once (default 10)"
    )
    worker.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module to import in every worker process (repeatable)",
    )
    worker.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        help="seconds running jobs get to finish on SIGTERM (default 30)",
    )
    worker.add_argument("--log-level", default="INFO")
    worker.set_defaults(handler=_worker)

    from worker.plugins.workflow.cli import add_commands as add_workflow_commands

    add_workflow_commands(commands, _connection_args)

    from worker.api.cli import add_command as add_api_command

    add_api_command(commands, _connection_args)

    demo = commands.add_parser("demo", help="the main job: a worker pool running a demo batch")
    _connection_args(demo)
    demo.add_argument("--jobs", type=int, default=20_000, help="size of the demo batch")
    demo.add_argument("--workflows", type=int, default=2_000, help="diamond workflows to run")
    demo.add_argument("--processes", type=int, default=2)
    demo.set_defaults(handler=_demo)
    return parser


async def _migrate(args: argparse.Namespace) -> int:
    report = await App(args.dsn, schema=args.schema).migrate()
    print(report.summary())
    return 0


async def _worker(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    async with App(args.dsn, schema=args.schema) as app:
        pool = Worker(
            app,
            processes=args.processes,
            queues=args.queues.split(","),
            concurrency=args.concurrency,
            imports=args.imports,
            grace_period=args.grace_period,
        )
        await pool.run_until_signal()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo, run_workflow_demo
    from worker.plugins.leadership import Leadership
    from worker.plugins.workflow import WorkflowPlugin

    configure_logging("WARNING")
    plugins = [Leadership(), WorkflowPlugin()]
    async with App(args.dsn, schema=args.schema, plugins=plugins) as app:
        print((await app.migrate()).summary())
        async with app.connection() as conn:
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
        print(f"PostgreSQL {row[0] if row else '?'} is up; starting {args.processes} workers")
        report = await run_demo(app, jobs=args.jobs, processes=args.processes)
        print(report.summary())
        print(await run_workflow_demo(app, workflows=args.workflows, processes=args.processes))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.handler(args))
    except PgdagError as exc:
        print(f"pgdag: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
