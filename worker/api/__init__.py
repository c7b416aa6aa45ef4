"""The HTTP API and the dashboard.

From the command line: ``pgdag api [--host 127.0.0.1] [--port 8000] [--no-auth]``.
From Python::

    from worker.api import create_app, serve

    await serve(app, port=8000)          # until SIGINT/SIGTERM
    asgi = create_app(app, token="...")  # or mount it in an ASGI server of yours

Every path but the dashboard's page and static files needs
``Authorization: Bearer <token>`` (see :mod:`worker.api.auth`).
"""

from worker.api.auth import ENV_TOKEN
from worker.api.errors import ApiError, BadRequest, NotFound
from worker.api.server import create_app, load_api_plugins, serve

__all__ = [
    "ENV_TOKEN",
    "ApiError",
    "BadRequest",
    "NotFound",
    "create_app",
    "load_api_plugins",
    "serve",
]
