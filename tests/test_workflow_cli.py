"""pgdag workflows list|show|dot, and the workflow API plugin called without a
server, on real data (tests/test_api.py has it behind a real server)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import workflow_jobs as wj

from worker import App
from worker.api import BadRequest, NotFound
from worker.plugins.workflow import Workflow, WorkflowPlugin


def pgdag(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", "workflows", *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def pushed(app: App) -> str:
    flow = Workflow('cli "demo"').add("a", wj.ok).add("b", wj.ok, ["a"])
    return await WorkflowPlugin.push(app, flow)


async def test_list_show_and_dot(clean_db: str, pushed: str) -> None:
    listing = pgdag(clean_db, "list")
    assert listing.returncode == 0, listing.stderr
    assert pushed in listing.stdout
    assert 'cli "demo"' in listing.stdout
    assert "pending" in listing.stdout
    assert "0/2" in listing.stdout

    assert "no workflows" in pgdag(clean_db, "list", "--state", "completed").stdout

    show = pgdag(clean_db, "show", pushed)
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    assert lines[0] == f'workflow cli "demo" ({pushed}): pending'
    step_a = next(line for line in lines if line.startswith("a "))
    step_b = next(line for line in lines if line.startswith("b "))
    assert "pending" in step_a
    assert step_a.split()[2] != "-", "a has a job id"
    assert step_b.split()[2:4] == ["-", "a"], "b has no job yet and depends on a"

    dot = pgdag(clean_db, "dot", pushed)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "cli \\"demo\\"" {\n')
    assert '"a" -> "b";' in dot.stdout


def test_unknown_and_malformed_ids_are_clear_errors(clean_db: str) -> None:
    for bad in ("00000000-0000-0000-0000-000000000000", "nope"):
        result = pgdag(clean_db, "show", bad)
        assert result.returncode == 1
        assert "pgdag: error:" in result.stderr
        assert bad in result.stderr


async def test_svg_needs_graphviz(clean_db: str, pushed: str, tmp_path: Path) -> None:
    target = tmp_path / "w.svg"
    result = pgdag(clean_db, "dot", pushed, "--svg", str(target))
    if shutil.which("dot"):
        assert result.returncode == 0, result.stderr
        assert "<svg" in target.read_text()
    else:
        assert result.returncode == 1
        assert "Graphviz" in result.stderr
        assert not target.exists()


@dataclass
class FakeRequest:
    """The two attributes the API plugin reads from a request."""

    path_params: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, Any] = field(default_factory=dict)


async def test_api_plugin_is_importable_and_answers(app: App, pushed: str) -> None:
    module, _, name = WorkflowPlugin().api_plugin().rpartition(".")  # type: ignore[union-attr]
    plugin = getattr(importlib.import_module(module), name)()
    assert plugin.name() == "workflows"
    assert [r["path"] for r in plugin.routes()] == [
        "/api/v1/workflows",
        "/api/v1/workflows/{id}",
    ]
    listed = await plugin.get_workflows(FakeRequest(), app=app)
    assert [w["id"] for w in listed["workflows"]] == [pushed]
    one = await plugin.get_workflow(FakeRequest(path_params={"id": pushed}), app=app)
    assert [s["step_id"] for s in one["steps"]] == ["a", "b"]
    with pytest.raises(BadRequest, match="'nope' is not a workflow id"):
        await plugin.get_workflow(FakeRequest(path_params={"id": "nope"}), app=app)
    unknown = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(NotFound, match=f"no workflow with id {unknown}"):
        await plugin.get_workflow(FakeRequest(path_params={"id": unknown}), app=app)
