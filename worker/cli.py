"""The ``pgdag`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from worker.app import App
from worker.errors import PgdagError


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

    demo = commands.add_parser("demo", help="the main job: bring a server up and run the demo")
    _connection_args(demo)
    demo.set_defaults(handler=_demo)
    return parser


async def _migrate(args: argparse.Namespace) -> int:
    report = await App(args.dsn, schema=args.schema).migrate()
    print(report.summary())
    return 0


async def _demo(args: argparse.Namespace) -> int:
    async with App(args.dsn, schema=args.schema) as app:
        report = await app.migrate()
        print(report.summary())
        async with app.connection() as conn:
            cur = await conn.execute("SHOW server_version")
            row = await cur.fetchone()
        print(f"PostgreSQL {row[0] if row else '?'} is up and schema {app.schema} is migrated.")
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
