"""Who may call the API: a bearer token, compared in constant time.

The token comes from the caller, else ``$PGDAG_API_TOKEN``, else it is
generated (``secrets``) and printed when the server starts. ``no_auth`` turns
the check off, and only when asked for explicitly.

What is protected: every path but the dashboard's page (``/``) and its static
files (``/static/...``), which hold no data. The page asks for the token (from
the URL fragment ``#token=...``, which browsers never send to a server, or a
login prompt), keeps it in ``sessionStorage`` and sends it with every API call as
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from worker.errors import ConfigurationError

ENV_TOKEN = "PGDAG_API_TOKEN"
MIN_TOKEN_LENGTH = 16
PUBLIC_PATHS = ("/",)
PUBLIC_PREFIXES = ("/static/",)


@dataclass(frozen=True)
class Token:
    """The token the server requires (None: no authentication) and where it came
    from: "argument", "environment", "generated" or "none"."""

    value: str | None
    source: str


def resolve_token(token: str | None = None, *, no_auth: bool = False) -> Token:
    if no_auth:
        if token is not None:
            raise ConfigurationError("a token was given together with no_auth: choose one")
        return Token(None, "none")
    if token is not None:
        return Token(check_token(token, "the API token"), "argument")
    from_env = os.environ.get(ENV_TOKEN)
    if from_env is not None:
        return Token(check_token(from_env, f"${ENV_TOKEN}"), "environment")
    return Token(secrets.token_urlsafe(32), "generated")


def check_token(token: str, what: str) -> str:
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            f"{what} is too short ({len(token)} characters, at least {MIN_TOKEN_LENGTH}); "
            "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise ConfigurationError(
            f"{what} must be printable ASCII without spaces (it travels in an HTTP header)"
        )
    return token


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; hashing first hides the expected length too."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class BearerAuth:
    """ASGI middleware: 401 for a non-public path without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and token_matches(given.strip(), self.token):
            await self.app(scope, receive, send)
            return
        message = (
            "this API needs an 'Authorization: Bearer <token>' header"
            if not header
            else "the bearer token is not the one this server was started with"
        )
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="pgdag"'),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
