"""Helpers of the API and dashboard tests: a real uvicorn server on a free port
of 127.0.0.1, in the test's own event loop, and a plain HTTP client for it."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from worker import App
from worker.api import create_app
from worker.api.server import bind

TOKEN = "test-token-0123456789-abcdefghij"

# never through a proxy from the environment: the server is on this machine
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str
    body: Any = field(default=None)


@dataclass
class ApiServer:
    base: str  # http://127.0.0.1:PORT
    token: str | None

    async def get(self, path: str, *, token: str | bool | None = True) -> Reply:
        """GET ``path``; ``token``: True sends the server's, a string sends that one,
        None or False sends none."""
        sent = self.token if token is True else token or None
        return await asyncio.to_thread(fetch, self.base + path, sent)


def fetch(url: str, token: str | None = None, headers: Mapping[str, str] | None = None) -> Reply:
    """GET ``url`` (with ``token`` as a bearer token, and ``headers``)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=30) as response:
            status, headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, dict(error.headers), error.read()
    text = raw.decode()
    is_json = headers.get("content-type", "").startswith("application/json")
    return Reply(status, headers, text, json.loads(text) if is_json else None)


@asynccontextmanager
async def api_server(
    app: App, *, token: str | None = TOKEN, plugins: list[Any] | None = None
) -> AsyncIterator[ApiServer]:
    """The API of ``app`` served by uvicorn on a free port (``token=None``: no auth)."""
    asgi = create_app(app, plugins=plugins or [], token=token, no_auth=token is None)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise AssertionError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield ApiServer(f"http://127.0.0.1:{port}", token)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


class HelloApiPlugin:
    """An API plugin of a user's: one JSON route, one that refuses, one Response."""

    def name(self) -> str:
        return "hello"

    def routes(self) -> list[dict[str, Any]]:
        return [
            {"path": "/api/v1/hello", "endpoint": self.hello, "methods": ["GET"]},
            {"path": "/api/v1/hello/teapot", "endpoint": self.teapot, "methods": ["GET"]},
            {"path": "/api/v1/hello/{who}", "endpoint": self.hello_who, "methods": ["GET"]},
        ]

    @staticmethod
    async def hello(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        return {"hello": app.schema}

    @staticmethod
    async def teapot(request: Any, *, app: App, worker: Any = None) -> Any:
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("short and stout", status_code=418)

    @staticmethod
    async def hello_who(request: Any, *, app: App, worker: Any = None) -> dict[str, Any]:
        from worker.api import NotFound

        raise NotFound(f"nobody called {request.path_params['who']}")


class ClashingApiPlugin(HelloApiPlugin):
    def name(self) -> str:
        return "clash"
