"""The workflow API without a database: building, validating, DOT, rules."""

from __future__ import annotations

import io

import pytest
from psycopg import sql

from worker import Job, job
from worker.job import JobState
from worker.plugins.workflow import (
    InvalidWorkflowError,
    Sequence,
    Workflow,
    WorkflowPlugin,
    WorkflowStep,
)
from worker.plugins.workflow.graph import find_cycle


@job()
async def top() -> None: ...


@job()
async def left() -> None: ...


@job()
async def right() -> None: ...


@job()
async def bottom() -> None: ...


REFERENCE_DOT = r"""digraph "example" {
  rankdir=TB;
  node [shape=box, style="rounded,filled", fontname="Arial"];
  "top" [label="top\n(pending)", fillcolor=lightblue];
  "left" [label="left\n(pending)", fillcolor=lightblue];
  "right" [label="right\n(pending)", fillcolor=lightblue];
  "bottom" [label="bottom\n(pending)", fillcolor=lightblue];
  "top" -> "left";
  "top" -> "right";
  "left" -> "bottom";
  "right" -> "bottom";
  labelloc="t";
  label="Workflow: example\nState: pending";
}
"""


def diamond() -> Workflow:
    return (
        Workflow("example")
        .add(top, "top")
        .add(left, "left", ["top"])
        .add(right, "right", ["top"])
        .add(bottom, "bottom", ["left", "right"])
    )


def test_reference_example_dot_is_exact() -> None:
    out = io.StringIO()
    WorkflowPlugin.generate_dot(diamond(), out)
    assert out.getvalue() == REFERENCE_DOT


def test_dot_colours_states_and_escapes_names() -> None:
    workflow = Workflow('we "quote" \\ it').add('a "b"', top).add("c\\d", left, ['a "b"'])
    workflow.steps['a "b"'].state = JobState.SUCCEEDED
    workflow.steps["c\\d"].state = JobState.RUNNING
    workflow.state = Workflow.State.RUNNING
    out = io.StringIO()
    WorkflowPlugin.generate_dot(workflow, out)
    text = out.getvalue()
    assert 'digraph "we \\"quote\\" \\\\ it" {' in text
    assert '"a \\"b\\"" [label="a \\"b\\"\\n(succeeded)", fillcolor=lightgreen];' in text
    assert '"c\\\\d" [label="c\\\\d\\n(running)", fillcolor=yellow];' in text
    assert '"a \\"b\\"" -> "c\\\\d";' in text
    assert 'label="Workflow: we \\"quote\\" \\\\ it\\nState: running";' in text


@pytest.mark.parametrize(
    ("state", "colour"),
    [("failed", "lightpink"), ("retrying", "lightgray"), ("cancelled", "lightgray")],
)
def test_dot_colours(state: str, colour: str) -> None:
    workflow = Workflow("w").add("s", top)
    workflow.steps["s"].state = JobState(state)
    out = io.StringIO()
    WorkflowPlugin.generate_dot(workflow, out)
    assert f'"s" [label="s\\n({state})", fillcolor={colour}];' in out.getvalue()


def test_both_argument_orders_of_add_build_the_same_steps() -> None:
    a = Workflow("w").add("s1", top).add("s2", left, ["s1"])
    b = Workflow("w").add(top, "s1").add(left, "s2", ["s1"])
    assert [(s.step_id, s.job, s.dependencies) for s in a.steps.values()] == [
        (s.step_id, s.job, s.dependencies) for s in b.steps.values()
    ]
    assert a.steps["s2"] == WorkflowStep(job=left, step_id="s2", dependencies=["s1"])


def test_add_group_shares_dependencies() -> None:
    workflow = Workflow("w").add("setup", top).add_group([("a", left), ("b", right)], ["setup"])
    assert {k: s.dependencies for k, s in workflow.steps.items()} == {
        "setup": [],
        "a": ["setup"],
        "b": ["setup"],
    }


def test_duplicate_step_id_is_refused_at_once() -> None:
    with pytest.raises(InvalidWorkflowError, match="duplicate step id 'a'"):
        Workflow("w").add("a", top).add("a", left)


def test_non_job_is_refused() -> None:
    with pytest.raises(InvalidWorkflowError, match=r"step 'a': .* is not a job"):
        Workflow("w").add("a", print)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        (Workflow("w").add("a", top, ["a"]), "step 'a' depends on itself"),
        (Workflow("w").add("a", top, ["nope"]), "step 'a' depends on unknown step 'nope'"),
        (
            Workflow("w").add("a", top, ["c"]).add("b", top, ["a"]).add("c", top, ["b"]),
            "has a cycle: a -> b -> c -> a",
        ),
        (Workflow("w").add("a", top.job.with_kwargs(x={1, 2})), "step 'a': the job's kwargs"),
        (Workflow(""), "workflow name '' must be"),
    ],
)
def test_bad_graphs_are_refused_naming_the_culprit(workflow: Workflow, message: str) -> None:
    with pytest.raises(InvalidWorkflowError, match=message):
        workflow._payload()


def test_find_cycle_on_a_deep_chain_does_not_recurse() -> None:
    chain = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(5000)}
    assert find_cycle(chain) is None
    chain["s0"] = ["s4999"]
    cycle = find_cycle(chain)
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert len(cycle) == 5001


def test_sequence_chains_its_jobs() -> None:
    workflow = Sequence("seq", [top, left]).add(right).to_workflow()
    assert [(k, s.dependencies) for k, s in workflow.steps.items()] == [
        ("step_1", []),
        ("step_2", ["step_1"]),
        ("step_3", ["step_2"]),
    ]
    assert workflow.name == "seq"


def test_state_helpers() -> None:
    workflow = diamond()
    assert not workflow.is_complete
    assert not workflow.is_running
    workflow.state = Workflow.State.RUNNING
    assert workflow.is_running
    workflow.state = Workflow.State.FAILED
    assert workflow.is_complete
    workflow.steps["top"].state = JobState.SUCCEEDED
    grouped = workflow.steps_by_state
    assert [s.step_id for s in grouped[JobState.SUCCEEDED]] == ["top"]
    assert [s.step_id for s in grouped[JobState.PENDING]] == ["left", "right", "bottom"]


def test_plugin_defaults_and_hooks() -> None:
    plugin = WorkflowPlugin()
    assert (plugin.polling_interval, plugin.max_workflows_per_run) == (1, 1000)
    assert plugin.pruning_rule.to_sql().as_string() == (
        'EXTRACT(EPOCH FROM (now() - "completed_at")) > 86400'.join("()")
    )
    assert plugin.api_plugin() == "worker.plugins.workflow.api.WorkflowApiPlugin"
    assert WorkflowPlugin.get_scope().value == "worker"
    assert plugin.migrate_key() == "workflow"


def test_rules_combine_and_quote_values() -> None:
    rule = (WorkflowPlugin.Rules.Age() > 60) & (
        (WorkflowPlugin.Rules.State() == "failed") | (WorkflowPlugin.Rules.Name() == "it's")
    )
    rendered = rule.to_sql().as_string()
    assert rendered == (
        '((EXTRACT(EPOCH FROM (now() - "completed_at")) > 60) AND '
        "((\"state\" = 'failed') OR (\"name\" = 'it''s')))"
    )
    assert isinstance(rule.to_sql(), sql.Composable)


def test_job_definitions_survive_the_round_trip() -> None:
    definition = Job(func="m.f", kwargs={"a": 1}, queue="q", priority=2, max_attempts=3)
    assert Job.unpack(definition.pack()) == definition
