"""Checking a workflow's graph before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from worker.errors import PgdagError


class InvalidWorkflowError(PgdagError, ValueError):
    """The workflow cannot be pushed as it is; the message names the culprit."""


def check_graph(name: str, dependencies: Mapping[str, Sequence[str]]) -> None:
    """Refuse empty or non-string step ids, self-dependencies, unknown
    dependencies and cycles (naming the cycle, e.g. ``a -> b -> a``)."""
    for step_id, deps in dependencies.items():
        if not isinstance(step_id, str) or not step_id:
            raise InvalidWorkflowError(
                f"workflow {name!r}: step id {step_id!r} must be a non-empty string"
            )
        seen: set[str] = set()
        for dep in deps:
            if dep == step_id:
                raise InvalidWorkflowError(f"workflow {name!r}: step {step_id!r} depends on itself")
            if dep not in dependencies:
                raise InvalidWorkflowError(
                    f"workflow {name!r}: step {step_id!r} depends on unknown step {dep!r}"
                )
            if dep in seen:
                raise InvalidWorkflowError(
                    f"workflow {name!r}: step {step_id!r} lists dependency {dep!r} twice"
                )
            seen.add(dep)
    cycle = find_cycle(dependencies)
    if cycle:
        raise InvalidWorkflowError(f"workflow {name!r} has a cycle: {' -> '.join(cycle)}")


def find_cycle(dependencies: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a closed path in execution order (``a -> b -> a``: b depends
    on a and a on b), or None. Iterative, so deep chains do not hit the
    recursion limit."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(dependencies, white)
    for root in dependencies:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack = [iter(dependencies[root])]
        colour[root] = grey
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if colour[dep] == grey:
                loop = [*path[path.index(dep) :], dep]
                return list(reversed(loop))
            if colour[dep] == white:
                colour[dep] = grey
                path.append(dep)
                stack.append(iter(dependencies[dep]))
    return None
