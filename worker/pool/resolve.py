"""Finding a job's function from its import path (``module.qualname``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any


class JobFunctionNotFound(LookupError):
    pass


@lru_cache(maxsize=4096)
def resolve(path: str) -> Callable[..., Any]:
    """The function at ``path``: the longest importable module prefix, then
    attributes (so ``pkg.mod.Class.method`` works)."""
    parts = path.split(".")
    errors: list[str] = []
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(str(exc))
            continue
        try:
            for attr in parts[cut:]:
                target = getattr(target, attr)
        except AttributeError:
            raise JobFunctionNotFound(
                f"job function {path!r} not found: module {module_name!r} has no "
                f"{'.'.join(parts[cut:])!r}"
            ) from None
        if not callable(target):
            raise JobFunctionNotFound(f"job function {path!r} is not callable")
        return target  # type: ignore[no-any-return]
    reason = errors[-1] if errors else path
    raise JobFunctionNotFound(
        f"job function {path!r} not found: cannot import its module ({reason})"
    )
