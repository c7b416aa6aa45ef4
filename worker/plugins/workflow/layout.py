"""A layered layout of a workflow's DAG, for drawing it (the dashboard's SVG).

Each step gets a layer (the length of the longest dependency path from a root,
so every edge points down) and an order within its layer. The order starts as
the order the steps were added, then a few barycenter sweeps (each step moves
towards the mean position of its neighbours in the layer above, then below)
untangle most crossings. Linear in steps plus edges per sweep; no recursion, so
a 10,000-step chain lays out like a diamond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SWEEPS = 4


def layered_layout(steps: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """``{step_id: (layer, order)}`` for ``{step_id: dependencies}`` (in the order the
    steps were added). Dependencies that name no step are ignored."""
    layers = _layers(steps)
    rows: list[list[str]] = [[] for _ in range(max(layers.values(), default=-1) + 1)]
    for step in steps:  # insertion order is the starting order
        rows[layers[step]].append(step)
    parents = {s: [d for d in deps if d in layers] for s, deps in steps.items()}
    children: dict[str, list[str]] = {s: [] for s in steps}
    for step, deps in parents.items():
        for dep in deps:
            children[dep].append(step)
    for sweep in range(SWEEPS):
        downwards = sweep % 2 == 0
        neighbours = parents if downwards else children
        indices = range(1, len(rows)) if downwards else range(len(rows) - 2, -1, -1)
        for index in indices:
            positions = _positions(rows, index, downwards)
            rows[index] = _by_barycenter(rows[index], neighbours, positions)
    return {
        step: (layer, order) for layer, row in enumerate(rows) for order, step in enumerate(row)
    }


def _layers(steps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Longest path from a root, by Kahn's topological order."""
    waiting = {s: sum(1 for d in deps if d in steps) for s, deps in steps.items()}
    dependents: dict[str, list[str]] = {s: [] for s in steps}
    for step, deps in steps.items():
        for dep in deps:
            if dep in steps:
                dependents[dep].append(step)
    layer = dict.fromkeys(steps, 0)
    ready = [s for s, n in waiting.items() if n == 0]
    placed: set[str] = set()
    while ready:
        step = ready.pop()
        placed.add(step)
        for child in dependents[step]:
            layer[child] = max(layer[child], layer[step] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    # a cycle cannot be pushed; should one be stored anyway, draw it below the rest
    bottom = max(layer.values(), default=0) + 1
    return {s: layer[s] if s in placed else bottom for s in steps}


def _positions(rows: list[list[str]], index: int, downwards: bool) -> dict[str, int]:
    neighbour_row = rows[index - 1] if downwards else rows[index + 1]
    return {step: order for order, step in enumerate(neighbour_row)}


def _by_barycenter(
    row: list[str], neighbours: Mapping[str, list[str]], positions: Mapping[str, int]
) -> list[str]:
    def key(item: tuple[int, str]) -> tuple[float, int]:
        order, step = item
        placed = [positions[n] for n in neighbours[step] if n in positions]
        # scaled so that a step without neighbours there keeps its relative place
        scale = max(len(positions), 1) / max(len(row), 1)
        return (sum(placed) / len(placed) if placed else order * scale, order)

    return [step for _, step in sorted(enumerate(row), key=key)]
