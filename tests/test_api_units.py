"""Parts of the API that need no database: the DAG layout, tokens, query
parameters, keeping the password out of text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import UUID

import pytest

from worker.api import params
from worker.api.auth import ENV_TOKEN, is_public, resolve_token, token_matches
from worker.api.errors import BadRequest
from worker.api.server import dashboard_url, is_loopback
from worker.errors import ConfigurationError
from worker.plugins.workflow.layout import layered_layout
from worker.redact import Redactor, redacted_dsn

# -- layout ------------------------------------------------------------------------


def test_diamond_layers() -> None:
    layout = layered_layout(
        {"top": [], "left": ["top"], "right": ["top"], "bottom": ["left", "right"]}
    )
    assert layout == {"top": (0, 0), "left": (1, 0), "right": (1, 1), "bottom": (2, 0)}


def test_a_step_sits_below_its_deepest_dependency() -> None:
    layout = layered_layout({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"]})
    assert layout["d"][0] == 3
    steps = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"], "e": [], "f": ["e", "b"]}
    layout = layered_layout(steps)
    for step, deps in steps.items():
        for dep in deps:
            assert layout[dep][0] < layout[step][0], (dep, step)


def test_orders_are_a_permutation_of_each_layer() -> None:
    steps = {f"root{i}": [] for i in range(3)} | {
        f"leaf{i}": [f"root{(i * 7) % 3}"] for i in range(10)
    }
    layout = layered_layout(steps)
    for layer in {layer for layer, _ in layout.values()}:
        orders = sorted(order for lay, order in layout.values() if lay == layer)
        assert orders == list(range(len(orders)))


def test_barycenter_sweeps_untangle_crossed_edges() -> None:
    # added crossed: x1 under b, x2 under a
    layout = layered_layout({"a": [], "b": [], "x1": ["b"], "x2": ["a"]})
    assert layout["x2"][1] < layout["x1"][1]


def test_a_long_chain_needs_no_recursion() -> None:
    steps = {"s0": []} | {f"s{i}": [f"s{i - 1}"] for i in range(1, 10_000)}
    layout = layered_layout(steps)
    assert layout["s9999"] == (9999, 0)


def test_empty_and_unknown_dependencies() -> None:
    assert layered_layout({}) == {}
    assert layered_layout({"a": ["ghost"]}) == {"a": (0, 0)}


# -- tokens ----------------------------------------------------------------------------


def test_token_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    generated = resolve_token()
    assert generated.source == "generated" and len(generated.value or "") >= 32
    assert resolve_token().value != generated.value
    monkeypatch.setenv(ENV_TOKEN, "x" * 20)
    assert resolve_token() == resolve_token(None) and resolve_token().source == "environment"
    assert resolve_token("y" * 16).source == "argument"
    assert resolve_token(no_auth=True).value is None


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("short", "too short (5 characters"),
        ("has a space in it here", "without spaces"),
        ("non-ascii-token-\u00e9\u00e9\u00e9", "printable ASCII"),
    ],
)
def test_unusable_tokens_are_refused(token: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        resolve_token(token)


def test_a_token_and_no_auth_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="choose one"):
        resolve_token("z" * 20, no_auth=True)


def test_token_comparison() -> None:
    assert token_matches("a" * 20, "a" * 20)
    assert not token_matches("a" * 19, "a" * 20)
    assert not token_matches("", "a" * 20)
    assert not token_matches("\u00e9" * 20, "a" * 20)


def test_public_paths_are_only_the_page_and_its_static_files() -> None:
    assert is_public("/") and is_public("/static/dashboard.js")
    for path in ("/api/v1/jobs", "/static", "/staticx/a", "//", "/index.html", "/api"):
        assert not is_public(path), path


def test_dashboard_url_carries_only_a_generated_token() -> None:
    generated = resolve_token()
    assert (
        dashboard_url("127.0.0.1", 80, generated) == f"http://127.0.0.1:80/#token={generated.value}"
    )
    assert dashboard_url("::1", 80, resolve_token(no_auth=True)) == "http://[::1]:80/"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


# -- query parameters --------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    key = UUID("01234567-89ab-7def-8123-456789abcdef")
    assert params.cursor({"cursor": params.make_cursor(at, key)}) == (at, key)
    assert params.cursor({}) is None


def test_page_gives_a_cursor_only_when_there_is_more() -> None:
    rows = [{"created_at": datetime(2025, 1, 1, tzinfo=UTC), "id": UUID(int=i)} for i in range(3)]
    assert params.page(rows, 3) == (rows, None)
    first, cursor = params.page(rows, 2)
    assert first == rows[:2]
    assert params.cursor({"cursor": cursor}) == (rows[1]["created_at"], rows[1]["id"])


def test_values_accept_repeats_and_commas() -> None:
    assert params.values({"state": ["a,b", " c "]}, "state") == ["a", "b", "c"]
    assert params.values({"state": "a"}, "state") == ["a"]
    assert params.values({}, "state") == []
    with pytest.raises(BadRequest, match="state='x' is not one of a, b"):
        params.choices({"state": "a,x"}, "state", ["a", "b"])


def test_limit_bounds() -> None:
    assert params.limit({}) == params.DEFAULT_LIMIT == 50
    assert params.limit({"limit": "500"}) == params.MAX_LIMIT
    for bad in ("0", "501", "-3", "1.5", "many"):
        with pytest.raises(BadRequest, match=re.escape(f"limit={bad!r}")):
            params.limit({"limit": bad})


# -- the password ----------------------------------------------------------------------------


def test_redactor_masks_the_dsn_and_its_password_in_any_form() -> None:
    dsn = "postgresql://me:p%40ss%2Fword@db.example:5432/app"
    redactor = Redactor(lambda: dsn)
    text = f"failed: {dsn} / p@ss/word / p%40ss%2Fword"
    scrubbed = redactor.scrub(text)
    assert "p@ss/word" not in scrubbed and "p%40ss%2Fword" not in scrubbed
    assert "db.example" not in scrubbed  # the whole DSN went first
    assert redactor.scrub("nothing secret") == "nothing secret"
    assert Redactor(lambda: "host=db password=pw2 user=me").scrub("pw2 and more") == "*** and more"
    assert "pw3" not in redacted_dsn("postgresql://me:pw3@db/app")
