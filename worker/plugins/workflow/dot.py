"""Graphviz DOT of a workflow, in exactly the reference's format."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from worker.plugins.workflow import Workflow

COLOURS = {
    "pending": "lightblue",
    "running": "yellow",
    "succeeded": "lightgreen",
    "failed": "lightpink",
}


def quote(text: str) -> str:
    """A DOT double-quoted string's content: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_dot(workflow: Workflow, output: TextIO) -> None:
    name = quote(workflow.name)
    output.write(f'digraph "{name}" {{\n')
    output.write("  rankdir=TB;\n")
    output.write('  node [shape=box, style="rounded,filled", fontname="Arial"];\n')
    for step in workflow.steps.values():
        state = step.state.value if step.state is not None else "pending"
        colour = COLOURS.get(state, "lightgray")
        sid = quote(step.step_id)
        output.write(f'  "{sid}" [label="{sid}\\n({state})", fillcolor={colour}];\n')
    for step in workflow.steps.values():
        for dep in step.dependencies:
            output.write(f'  "{quote(dep)}" -> "{quote(step.step_id)}";\n')
    output.write('  labelloc="t";\n')
    output.write(f'  label="Workflow: {name}\\nState: {workflow.state.value}";\n')
    output.write("}\n")
