"""The HTTP server: the routes of every API plugin, the dashboard, bearer auth.

:func:`create_app` builds the Starlette application; :func:`serve` runs it with
uvicorn. API plugins have ``name()`` and ``routes()``; each route is a dict with
``path``, ``endpoint`` and ``methods``, and an endpoint is called as
``await endpoint(request, app=app, worker=None)`` and returns a JSON-ready dict
(or a Starlette ``Response``). An :class:`~worker.api.errors.ApiError` becomes
``{"error": message}`` with its status; anything else a 500 whose details go to
the server's log, not to the client.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import ipaddress
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.auth import BearerAuth, Token, resolve_token
from worker.api.encode import jsonable
from worker.api.errors import ApiError
from worker.api.jobs import JobsApiPlugin
from worker.app import App
from worker.errors import ConfigurationError
from worker.redact import Redactor

log = logging.getLogger("pgdag.api")

STATIC = Path(__file__).resolve().parent / "static"

# The dashboard loads nothing from elsewhere; the policy makes that a rule.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

Endpoint = Callable[..., Awaitable[Any]]


def create_app(
    app: App,
    *,
    plugins: Iterable[Any] = (),
    token: str | None = None,
    no_auth: bool = False,
) -> Starlette:
    """The API and dashboard of ``app`` as an ASGI application.

    Routes come from the jobs API, from ``api_plugin()`` of each of
    ``app.plugins`` and from ``plugins`` (API plugin instances, classes or
    import strings). Without ``token`` and unless ``no_auth``, the token is
    ``$PGDAG_API_TOKEN`` or a generated one; either way it is at
    ``.state.token`` (``.state.token_source`` says where it came from). The
    application opens ``app`` when it starts if it is not open yet, and closes
    it at shutdown only then.
    """
    required = resolve_token(token, no_auth=no_auth)
    redactor = Redactor(lambda: app.dsn)  # read when scrubbing: the app is open by then
    api_plugins = load_api_plugins(app, plugins)
    routes: list[BaseRoute] = [
        Route("/", _index, methods=["GET", "HEAD"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        Route("/api/v1/info", _info_endpoint(app, api_plugins), methods=["GET"]),
    ]
    seen: dict[tuple[str, str], str] = {}
    for plugin in api_plugins:
        for route in plugin.routes():
            methods = [m.upper() for m in route.get("methods", ["GET"])]
            for method in methods:
                owner = seen.setdefault((method, route["path"]), plugin.name())
                if owner != plugin.name():
                    raise ConfigurationError(
                        f"API plugins {owner!r} and {plugin.name()!r} both serve "
                        f"{method} {route['path']}"
                    )
            routes.append(
                Route(
                    route["path"],
                    _adapt(route["endpoint"], app, redactor),
                    methods=methods,
                    name=route.get("name"),
                )
            )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        opened_here = not app.is_open
        await app.open()
        try:
            yield
        finally:
            if opened_here:
                await app.close()

    starlette = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BearerAuth, token=required.value),
        ],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
    starlette.state.token = required.value
    starlette.state.token_source = required.source
    starlette.state.plugins = [p.name() for p in api_plugins]
    return starlette


def load_api_plugins(app: App, extra: Iterable[Any] = ()) -> list[Any]:
    """The jobs API, then the API components named by ``app.plugins``, then ``extra``;
    the same class twice is kept once."""
    found: list[Any] = [JobsApiPlugin()]
    wanted: list[Any] = [p.api_plugin() for p in app.plugins if hasattr(p, "api_plugin")]
    for item in [*wanted, *extra]:
        if item is None:
            continue
        if isinstance(item, str):
            item = _import(item)
        if isinstance(item, type):
            item = item()
        if not (callable(getattr(item, "name", None)) and callable(getattr(item, "routes", None))):
            raise ConfigurationError(
                f"{item!r} is not an API plugin (it needs name() and routes())"
            )
        if not any(type(p) is type(item) for p in found):
            found.append(item)
    return found


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"cannot import the API plugin {path!r}: {exc}") from exc


def _adapt(endpoint: Endpoint, app: App, redactor: Redactor) -> Callable[[Request], Awaitable[Any]]:
    """A Starlette endpoint around a plugin's: JSON out, errors as JSON."""

    async def handle(request: Request) -> Response:
        try:
            result = await endpoint(request, app=app, worker=None)
        except ApiError as exc:
            return _json({"error": exc.message}, exc.status)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            log.error(
                "%s %s: the database is unavailable: %s",
                request.method,
                request.url.path,
                redactor.scrub(str(exc)),
            )
            return _json({"error": "the database is unavailable"}, 503)
        except Exception as exc:  # noqa: BLE001 - the client gets a 500, the log the details
            log.error(
                "%s %s failed:\n%s",
                request.method,
                request.url.path,
                redactor.scrub("".join(traceback.format_exception(exc))),
            )
            return _json({"error": "internal error (the server's log has the details)"}, 500)
        return result if isinstance(result, Response) else _json(result)

    handle.__name__ = getattr(endpoint, "__name__", "endpoint")
    return handle


def _json(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(jsonable(content), status, headers={"cache-control": "no-store"})


def _info_endpoint(app: App, plugins: list[Any]) -> Callable[[Request], Awaitable[Response]]:
    try:
        version = importlib.metadata.version("pgdag")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"

    async def info(request: Request) -> Response:
        """What this server serves (never where the database is)."""
        return _json(
            {"version": version, "schema": app.schema, "plugins": [p.name() for p in plugins]}
        )

    return info


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {404: f"nothing at {request.url.path}", 405: f"{request.method} is not allowed here"}
    return _json({"error": message.get(exc.status_code, exc.detail)}, exc.status_code)


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- running it ---------------------------------------------------------------------


async def check_database(app: App) -> None:
    """Fail fast, and without the DSN in the message, when the database does not
    answer or the schema was not migrated."""
    try:
        async with app.connection() as conn:
            await app.queries.schema_version(conn)
    except (psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedFunction):
        raise ConfigurationError(
            f"schema {app.schema!r} has no pgdag tables: run `pgdag migrate` first"
        ) from None
    except psycopg.OperationalError as exc:
        message = Redactor(lambda: app.dsn).scrub(str(exc).strip())
        raise ConfigurationError(f"cannot connect to the database: {message}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the address is known before
    uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def dashboard_url(host: str, port: int, token: Token) -> str:
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    return f"{url}#token={token.value}" if token.source == "generated" else url


async def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    plugins: Iterable[Any] = (),
    token: str | None = None,
    no_auth: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the API and dashboard until SIGINT/SIGTERM (or cancellation).

    Opens ``app`` if needed (its owner closes it). Refuses to start on a schema
    that was not migrated. ``announce`` receives the lines to show the user (the
    dashboard's address, with the token when it was generated); the DSN is
    never among them.
    """
    await check_database(app)
    await app.open()
    starlette = create_app(app, plugins=plugins, token=token, no_auth=no_auth)
    required = Token(starlette.state.token, starlette.state.token_source)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        starlette,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    url = dashboard_url(host, port, required)
    announce(f"pgdag api: dashboard and API (schema {app.schema}) at {url}")
    if required.source == "environment":
        announce("pgdag api: requests need the token in $PGDAG_API_TOKEN (Authorization: Bearer)")
    elif required.source == "generated":
        announce("pgdag api: generated a token (set $PGDAG_API_TOKEN to choose one); send it as")
        announce(f"           Authorization: Bearer {required.value}")
    elif required.source == "none":
        announce("pgdag api: WARNING: started with --no-auth: anyone who can connect reads it all")
    if not is_loopback(host):
        announce(
            f"pgdag api: WARNING: listening on {host}, not only on this machine; plain HTTP, "
            "so put a TLS proxy in front"
        )
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
