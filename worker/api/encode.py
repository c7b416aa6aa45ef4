"""Rows to JSON-ready values: UUIDs as strings, times as ISO 8601 with offset."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from uuid import UUID


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    return value
