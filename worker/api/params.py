"""Query parameters of the API: parsed strictly, each refusal naming the culprit.

Lists are newest first and paginated by an opaque cursor: a page that has more
after it carries ``next_cursor``; pass it back as ``?cursor=`` for the next page.
The cursor encodes the ``(created_at, id)`` of the page's last row (keyset
pagination), so pages do not shift when rows are added meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from psycopg import AsyncConnection

from worker.api.encode import jsonable
from worker.api.errors import BadRequest

if TYPE_CHECKING:
    from worker.app import App

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Keyset = tuple[datetime, UUID]


def check_known(params: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse parameters the endpoint does not know (a typo must not be ignored)."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise BadRequest(f"unknown query parameter {unknown[0]!r}; this endpoint takes {takes}")


def values(params: Mapping[str, Any], name: str) -> list[str]:
    """Every value of ``name``: repeated (``?state=a&state=b``) or comma-separated."""
    raw: Iterable[Any]
    if hasattr(params, "getlist"):
        raw = params.getlist(name)
    else:
        value = params.get(name)
        raw = [] if value is None else value if isinstance(value, list) else [value]
    return [part.strip() for item in raw for part in str(item).split(",") if part.strip()]


def choices(params: Mapping[str, Any], name: str, allowed: Collection[str]) -> list[str] | None:
    """The values of ``name``, each one of ``allowed``; None when absent."""
    found = values(params, name)
    for value in found:
        if value not in allowed:
            raise BadRequest(f"{name}={value!r} is not one of " + ", ".join(sorted(allowed)))
    return found or None


def text(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    return str(value)


def limit(params: Mapping[str, Any]) -> int:
    raw = params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit={raw!r} must be an integer from 1 to {MAX_LIMIT}")
    return value


def uuid(value: str, what: str) -> UUID:
    """``value`` as a UUID, or 400 naming ``what`` (e.g. "workflow id")."""
    try:
        return UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise BadRequest(f"{value!r} is not a {what} (a UUID)") from None


def cursor(params: Mapping[str, Any]) -> Keyset | None:
    raw = params.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        at, key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        return datetime.fromisoformat(at), UUID(key)
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise BadRequest(f"cursor={raw!r} is not a cursor this API gave out") from None


def make_cursor(at: datetime, key: UUID) -> str:
    encoded = json.dumps([at.isoformat(), str(key)], separators=(",", ":"))
    return base64.urlsafe_b64encode(encoded.encode("ascii")).decode("ascii").rstrip("=")


def page(rows: list[dict[str, Any]], size: int) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of a query asked for ``size + 1`` rows: the page, and the cursor of the
    next one (None when this is the last page)."""
    if len(rows) <= size:
        return rows, None
    last = rows[size - 1]
    return rows[:size], make_cursor(last["created_at"], last["id"])


Fetch = Callable[[AsyncConnection[Any], "Keyset | None", int], Awaitable[list[dict[str, Any]]]]


async def newest_first(
    app: App, params: Mapping[str, Any], key: str, fetch: Fetch
) -> dict[str, Any]:
    """A list endpoint's answer: ``fetch(conn, before, limit)`` asked for one row
    more than ``?limit=`` wants, after ``?cursor=``; the page under ``key``, the
    next cursor, the limit and PostgreSQL's clock (for ages)."""
    size = limit(params)
    async with app.connection() as conn:
        rows = await fetch(conn, cursor(params), size + 1)
        now = await app.queries.server_now(conn)
    items, next_cursor = page(rows, size)
    return jsonable({key: items, "next_cursor": next_cursor, "limit": size, "now": now})
