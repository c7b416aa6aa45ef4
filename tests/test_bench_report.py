"""The generated part of bench/RESULTS.md, from a fixed `python -m bench compare` JSON
(no database: bench/report.py is pure)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(section: str, workload: str, system: str, rep: int, **result: float) -> dict[str, Any]:
    return {
        "section": section,
        "workload": workload,
        "system": system,
        "rep": rep,
        "shape": f"{workload} shape",
        "result": result,
        "error": None,
    }


def _data(report: ModuleType) -> dict[str, Any]:
    runs = []
    for rep, (pg, ch) in enumerate([(8000.0, 200.0), (9000.0, 220.0), (8500.0, 180.0)]):
        runs.append(_run("workload", "diamond", "pgdag", rep, steps_per_s=pg, job_hop_ms_p50=3.0))
        runs.append(_run("workload", "diamond", "chancy fastest", rep, steps_per_s=ch))
        runs.append(_run("workload", "chain", "pgdag", rep, steps_per_s=3000.0, job_hop_ms_p50=6.0))
        runs.append(_run("workload", "noop", "pgdag", rep, drain_jobs_per_s=15000.0))
        runs.append(_run("ceiling", "ceiling", "bare SQL", rep, steps_per_s=30000.0))
        runs.append(_run("scale", "idle 0", "pgdag", rep, steps_per_s=8000.0))
        runs.append(_run("scale", "idle 100,000", "pgdag", rep, steps_per_s=7000.0))
    failed = _run("workload", "diamond", "chancy defaults", 0)
    failed["error"] = "RunError: timed out"
    runs.append(failed)
    summary = report.summarise(runs)
    return {
        "params": {"repeat": 3, "defaults_repeat": 1},
        "meta": {
            "git_sha": "abc1234",
            "git_dirty": True,
            "postgresql": "18.4",
            "cores": 2,
            "python": "3.11.7",
            "chancy": "0.26.0",
            "at": "2026-01-01T00:00:00+00:00",
            "wall_seconds": 600.0,
            "settings": {"pgdag": "pgdag: as it comes"},
        },
        "summary": summary,
        "targets": report.targets(summary),
        "runs": runs,
    }


def test_summary_keeps_median_min_max_and_errors(report: ModuleType) -> None:
    data = _data(report)
    diamond = report.find(data["summary"], "workload", "diamond", "pgdag")
    assert diamond["metrics"]["steps_per_s"] == {
        "median": 8500.0,
        "min": 8000.0,
        "max": 9000.0,
        "n": 3,
    }
    failed = report.find(data["summary"], "workload", "diamond", "chancy defaults")
    assert failed["runs"] == 0 and failed["errors"] == ["RunError: timed out"]


def test_targets_are_judged_on_medians(report: ModuleType) -> None:
    ratio, hop, ceiling, flat = _data(report)["targets"]
    assert (ratio["result"], ratio["measured"]) == ("pass", "42.5x")  # 8,500 / 200
    assert (hop["result"], hop["measured"]) == ("fail", "6.0 ms")
    assert (ceiling["result"], ceiling["measured"]) == ("pass", "50% of the ceiling")
    assert (flat["result"], flat["measured"]) == ("fail", "100,000: -12%")


def test_results_md_keeps_the_hand_written_history(report: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nhand-written history\n")
    data = _data(report)
    report.update_results(path, report.render_markdown(data))
    first = path.read_text()
    assert first.startswith("# Benchmark results\n\nhand-written history\n")
    assert first.count(report.BEGIN) == 1 and first.count(report.END) == 1
    assert "git abc1234 (uncommitted changes), PostgreSQL 18.4, 2 cores" in first
    assert "| steps/s | 8,500 (8,000-9,000) | 200 (180-220) | 42.5x | error | - |" in first
    assert "| 100,000 idle running workflows | 7,000 (7,000-7,000) | -12.5% |" in first

    path.write_text(first + "\nmore hand-written text\n")
    data["meta"]["git_sha"] = "def5678"
    report.update_results(path, report.render_markdown(data))
    second = path.read_text()
    assert "def5678" in second and "abc1234" not in second
    assert second.count(report.BEGIN) == 1
    assert second.endswith("\nmore hand-written text\n")


def _scale_runs(report: ModuleType, pairs: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Scale runs, one (0 idle, 100,000 idle) pair of steps/s per repetition,
    paired as bench compare pairs them."""
    runs = []
    for rep, (none, idle) in enumerate(pairs):
        results = {0: {"steps_per_s": none}, 100_000: {"steps_per_s": idle}}
        report.pair_with_none(results)
        for count, result in results.items():
            runs.append(_run("scale", f"idle {count:,}", "pgdag", rep, **result))
    return runs


def test_flatness_is_judged_on_changes_paired_by_repetition(report: ModuleType) -> None:
    # one repetition hit a slow spell: the ratio of the medians (5,880 / 8,000)
    # would say -26 %, each repetition's own comparison says -3 %, -2 %, -38 %
    runs = _scale_runs(report, [(10000.0, 9700.0), (6000.0, 5880.0), (8000.0, 5000.0)])
    summary = report.summarise(runs)
    flat = report.targets(summary)[3]
    assert (flat["result"], flat["measured"]) == ("pass", "100,000: -3%")
    _title, _headers, rows = report.scale_table(summary)
    assert [row[2] for row in rows] == ["+0.0%", "-3.0% (-37.5% to -2.0%)"]


def test_flatness_fails_beyond_ten_percent_either_way(report: ModuleType) -> None:
    runs = _scale_runs(report, [(8000.0, 9200.0), (8000.0, 9000.0), (8000.0, 9600.0)])
    flat = report.targets(report.summarise(runs))[3]
    assert (flat["result"], flat["measured"]) == ("fail", "100,000: +15%")
