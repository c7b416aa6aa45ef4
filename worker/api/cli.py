"""``pgdag api``: the HTTP API and dashboard."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Callable

from worker.app import App
from worker.logconfig import configure as configure_logging
from worker.redact import RedactingFilter, Redactor


def add_command(
    commands: argparse._SubParsersAction,
    connection_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    parser = commands.add_parser(
        "api",
        help="serve the HTTP API and the dashboard",
        description="Serve the HTTP API and the dashboard. Every path but the dashboard's "
        "page needs 'Authorization: Bearer <token>': the token is $PGDAG_API_TOKEN, or "
        "one generated and printed at start (with a ready-to-open dashboard address).",
    )
    connection_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any)")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without a token (anyone who can connect reads everything)",
    )
    parser.add_argument(
        "--api-plugin",
        dest="api_plugins",
        action="append",
        default=[],
        metavar="IMPORT",
        help="import path of another API plugin to mount (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=_api)


async def _api(args: argparse.Namespace) -> int:
    from worker.api.server import serve
    from worker.plugins.workflow import WorkflowPlugin

    # uvicorn stops gracefully on SIGTERM, then raises it again for the handler it
    # found: with this one, that ends the process with status 0 (as `pgdag worker`).
    signal.signal(signal.SIGTERM, _exit_quietly)
    app = App(args.dsn, schema=args.schema, plugins=[WorkflowPlugin()])
    configure_logging(args.log_level)
    # the DSNs that may hold a password (the embedded server's has none); reading
    # app.dsn here could start the embedded server from inside a log call
    scrubber = RedactingFilter(Redactor(lambda: args.dsn or os.environ.get("PGDAG_DSN")))
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)
    try:
        await serve(
            app,
            host=args.host,
            port=args.port,
            plugins=args.api_plugins,
            no_auth=args.no_auth,
            announce=lambda line: print(line, flush=True),
        )
    finally:
        await app.close()
    return 0


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)
