"""Summaries, tables and the generated section of ``bench/RESULTS.md`` for
``python -m bench compare``, computed from its JSON alone (standard library only,
so that the JSON of any run can be rendered again: ``--report PATH``).

A run record (``runs`` in the JSON) is::

    {"section": "workload" | "ceiling" | "scale" | "big",
     "workload": "diamond", "system": "pgdag" | "chancy fastest" | ..., "rep": 0,
     "shape": "diamond x1,000", "result": {metric: value, ...}, "error": None}
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench compare: generated section, begin -->"
END = "<!-- bench compare: generated section, end -->"

PGDAG, FASTEST, DEFAULTS, SQL = "pgdag", "chancy fastest", "chancy defaults", "bare SQL"
SYSTEMS = (PGDAG, FASTEST, DEFAULTS)

# workload -> metrics shown for it: (key, label, higher is better)
THROUGHPUT_JOBS = [
    ("push_jobs_per_s", "push jobs/s", True),
    ("drain_jobs_per_s", "drain jobs/s", True),
]
THROUGHPUT_STEPS = [
    ("steps_per_s", "steps/s", True),
    ("workflow_latency_ms_p50", "workflow latency p50 ms", False),
    ("workflow_latency_ms_p95", "workflow latency p95 ms", False),
    ("job_hop_ms_p50", "hop latency p50 ms", False),
    ("job_hop_ms_p95", "hop latency p95 ms", False),
]
RESOURCES = [
    ("pool_cpu_s_per_1k", "worker CPU s / 1k steps", False),
    ("postgres_cpu_s_per_1k", "PostgreSQL CPU s / 1k steps", False),
    ("pool_peak_rss_mib", "pool peak RSS MiB", False),
]
WORKLOAD_ORDER = ["noop", "diamond", "chain", "fan"]

Table = tuple[str, list[str], list[list[str]]]


# -- summaries ---------------------------------------------------------------------


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (section, workload, system): median, min and max of every
    numeric metric over its successful runs, the shape(s) measured, errors."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["section"], run["workload"], run["system"]), []).append(run)
    summary = []
    for (section, workload, system), members in groups.items():
        good = [r for r in members if not r.get("error")]
        keys = sorted({k for r in good for k, v in r["result"].items() if _number(v)})
        metrics = {}
        for key in keys:
            values = [r["result"][key] for r in good if _number(r["result"].get(key))]
            if values:
                metrics[key] = _stats(values)
        summary.append(
            {
                "section": section,
                "workload": workload,
                "system": system,
                "shape": " / ".join(dict.fromkeys(r["shape"] for r in members)),
                "runs": len(good),
                "errors": [r["error"] for r in members if r.get("error")],
                "metrics": metrics,
            }
        )
    return summary


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def find(
    summary: Sequence[dict[str, Any]], section: str, workload: str, system: str
) -> dict[str, Any] | None:
    for entry in summary:
        if (entry["section"], entry["workload"], entry["system"]) == (section, workload, system):
            return entry
    return None


def median(
    summary: Sequence[dict[str, Any]], section: str, workload: str, system: str, key: str
) -> float | None:
    entry = find(summary, section, workload, system)
    if entry is None or key not in entry["metrics"]:
        return None
    return entry["metrics"][key]["median"]


def pair_with_none(results: dict[int, dict[str, Any]]) -> None:
    """Give each scale result with idle workflows present ``vs_none``: its steps/s
    against the run of the same repetition with none present, minus 1. Runs minutes
    apart on this machine differ more than runs side by side, so flatness is judged
    on these paired changes (their median), not on the ratio of two medians."""
    base = results.get(0, {}).get("steps_per_s")
    for idle, result in results.items():
        rate = result.get("steps_per_s")
        if idle and base and rate:
            result["vs_none"] = rate / base - 1


def _changes(summary: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Scale: idle count -> change of diamond steps/s against none present (the
    median of the paired changes; the ratio of medians for older JSON without them)."""
    scale = [e for e in summary if e["section"] == "scale" and "steps_per_s" in e["metrics"]]
    base = median(summary, "scale", "idle 0", PGDAG, "steps_per_s")
    changes = {}
    for e in scale:
        if e["workload"] == "idle 0":
            continue
        if "vs_none" in e["metrics"]:
            changes[e["workload"].removeprefix("idle ")] = e["metrics"]["vs_none"]["median"]
        elif base:
            changes[e["workload"].removeprefix("idle ")] = (
                e["metrics"]["steps_per_s"]["median"] / base - 1
            )
    return changes


# -- targets -------------------------------------------------------------------------


def _target(
    target: str,
    value: float | None,
    shown: Callable[[float], str],
    result: Callable[[float], str],
) -> dict[str, Any]:
    """One judged target: "n/a" where its figure was not measured."""
    if value is None:
        return {"target": target, "measured": "n/a", "value": None, "result": "n/a"}
    return {"target": target, "measured": shown(value), "value": value, "result": result(value)}


def targets(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for pgdag, judged on the medians (reported, never asserted)."""
    pgdag = median(summary, "workload", "diamond", PGDAG, "steps_per_s")
    chancy = median(summary, "workload", "diamond", FASTEST, "steps_per_s")
    drain = median(summary, "workload", "noop", PGDAG, "drain_jobs_per_s")
    ceiling = median(summary, "ceiling", "ceiling", SQL, "steps_per_s")
    changes = _changes(summary)

    return [
        _target(
            "diamonds >= 40x chancy at its fastest settings (20x at the very least)",
            pgdag / chancy if pgdag and chancy else None,
            lambda ratio: f"{ratio:,.1f}x",
            lambda ratio: "pass" if ratio >= 40 else "minimum only" if ratio >= 20 else "fail",
        ),
        _target(
            "chain hop p50 <= 5 ms",
            median(summary, "workload", "chain", PGDAG, "job_hop_ms_p50"),
            lambda hop: f"{hop:.1f} ms",
            lambda hop: "pass" if hop <= 5 else "fail",
        ),
        _target(
            ">= 1/3 of the bare SQL ceiling for no-op jobs",
            drain / ceiling if drain and ceiling else None,
            lambda share: f"{share:.0%} of the ceiling",
            lambda share: "pass" if share >= 1 / 3 else "fail",
        ),
        _target(
            "diamonds flat against idle running workflows (within 10%)",
            max(changes.values(), key=abs) if changes else None,
            lambda _: ", ".join(f"{k}: {v:+.0%}" for k, v in changes.items()),
            lambda _: "pass" if all(abs(v) <= 0.10 for v in changes.values()) else "fail",
        ),
    ]


# -- tables ----------------------------------------------------------------------------


def _fmt(value: float | None, key: str = "") -> str:
    if value is None:
        return "-"
    if key.endswith(("_seconds", "_cpu_s")) or "per_1k" in key:
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _cell(entry: dict[str, Any] | None, key: str) -> str:
    if entry is None:
        return "-"
    if key not in entry["metrics"]:
        return "error" if entry["errors"] else "-"
    m = entry["metrics"][key]
    if m["n"] == 1:
        return _fmt(m["median"], key)
    return f"{_fmt(m['median'], key)} ({_fmt(m['min'], key)}-{_fmt(m['max'], key)})"


def _ratio(
    pgdag: dict[str, Any] | None, other: dict[str, Any] | None, key: str, higher: bool
) -> str:
    if pgdag is None or other is None:
        return "-"
    a = pgdag["metrics"].get(key, {}).get("median")
    b = other["metrics"].get(key, {}).get("median")
    if a is None or b is None:
        return "-"
    if (a <= 0) if not higher else (b <= 0):
        return "-" if higher else "n/a (pgdag 0)"
    ratio = a / b if higher else b / a
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:,.1f}x"


def comparison_table(summary: Sequence[dict[str, Any]], systems: Sequence[str]) -> Table:
    """pgdag against chancy: one row per workload and metric, medians (min-max),
    and how many times better pgdag is (higher throughput, or lower latency/cost)."""
    others = [s for s in systems if s != PGDAG]
    header = ["workload", "metric", PGDAG]
    for other in others:
        header += [other, "x"]
    rows = []
    for workload in WORKLOAD_ORDER:
        entries = {s: find(summary, "workload", workload, s) for s in (PGDAG, *systems)}
        if not any(entries.values()):
            continue
        base = THROUGHPUT_JOBS if workload == "noop" else THROUGHPUT_STEPS
        shape_row = [workload, "measured", entries[PGDAG]["shape"] if entries[PGDAG] else "-"]
        for other in others:
            entry = entries[other]
            runs = f"{entry['shape']}, {entry['runs']} run(s)" if entry else "-"
            shape_row += [runs, ""]
        rows.append(shape_row)
        for key, label, higher in base + RESOURCES:
            row = ["", label, _cell(entries[PGDAG], key)]
            for other in others:
                row += [
                    _cell(entries[other], key),
                    _ratio(entries[PGDAG], entries[other], key, higher),
                ]
            rows.append(row)
    return (
        "pgdag against chancy 0.26.0 (median (min-max); x = how many times better pgdag is)",
        header,
        rows,
    )


def ceiling_table(summary: Sequence[dict[str, Any]], systems: Sequence[str]) -> Table:
    ceiling = median(summary, "ceiling", "ceiling", SQL, "steps_per_s")
    entry = find(summary, "ceiling", "ceiling", SQL)
    rows = [
        [
            "bare SQL claim + complete + enqueue successor",
            "steps/s",
            _cell(entry, "steps_per_s"),
            "100%",
        ]
    ]
    for system in systems:
        for workload, key, label in (
            ("noop", "drain_jobs_per_s", "no-op drain jobs/s"),
            ("diamond", "steps_per_s", "diamond steps/s"),
        ):
            value = median(summary, "workload", workload, system, key)
            share = f"{value / ceiling:.1%}" if value and ceiling else "-"
            rows.append([system, label, _fmt(value), share])
    return ("Share of the bare SQL ceiling", ["system", "metric", "median", "of ceiling"], rows)


def scale_table(summary: Sequence[dict[str, Any]]) -> Table:
    entries = [e for e in summary if e["section"] == "scale"]
    entries.sort(key=lambda e: int(e["workload"].split()[1].replace(",", "")))
    changes = _changes(summary)
    rows = []
    for e in entries:
        count = e["workload"].removeprefix("idle ")
        change = "-" if count not in changes else f"{changes[count]:+.1%}"
        if "vs_none" in e["metrics"] and e["metrics"]["vs_none"]["n"] > 1:
            m = e["metrics"]["vs_none"]
            change += f" ({m['min']:+.1%} to {m['max']:+.1%})"
        rows.append(
            [
                f"{count} idle running workflows",
                _cell(e, "steps_per_s"),
                "+0.0%" if count == "0" else change,
                _cell(e, "job_hop_ms_p50"),
                _cell(e, "idle_build_seconds"),
            ]
        )
    measured = entries[0]["shape"].rsplit(", ", 1)[0] if entries else "diamonds"
    return (
        f"pgdag {measured} with idle running workflows present (vs none: the change against "
        "the run with none present of the same repetition, median (min to max))",
        ["present", "steps/s", "vs none", "hop p50 ms", "building them s"],
        rows,
    )


def big_table(summary: Sequence[dict[str, Any]]) -> Table:
    entry = find(summary, "big", "one workflow", PGDAG)
    rows = []
    if entry is not None:
        rows.append(
            [
                entry["shape"],
                _cell(entry, "push_seconds"),
                _cell(entry, "completion_seconds"),
                _cell(entry, "steps_per_s"),
            ]
        )
    return ("pgdag: one big workflow", ["workflow", "push s", "completion s", "steps/s"], rows)


def targets_table(found: Sequence[dict[str, Any]]) -> Table:
    rows = [[t["target"], t["measured"], t["result"]] for t in found]
    return ("Targets for pgdag (reported, not asserted)", ["target", "measured", "result"], rows)


def tables(data: dict[str, Any]) -> list[Table]:
    summary = data["summary"]
    systems = [s for s in SYSTEMS if any(e["system"] == s for e in summary)]
    return [
        comparison_table(summary, systems),
        ceiling_table(summary, systems),
        scale_table(summary),
        big_table(summary),
        targets_table(data["targets"]),
    ]


# -- text ------------------------------------------------------------------------------


def reading(data: dict[str, Any]) -> list[str]:
    """A few sentences that read the figures (generated, so they follow the numbers)."""
    summary = data["summary"]
    out = []

    def m(workload: str, system: str, key: str, section: str = "workload") -> float | None:
        return median(summary, section, workload, system, key)

    d_pg, d_ch = m("diamond", PGDAG, "steps_per_s"), m("diamond", FASTEST, "steps_per_s")
    if d_pg and d_ch:
        out.append(
            f"Diamonds: pgdag {d_pg:,.0f} steps/s against chancy's {d_ch:,.0f} at its fastest "
            f"settings, {d_pg / d_ch:,.0f}x."
        )
    d_def = m("diamond", DEFAULTS, "steps_per_s")
    if d_pg and d_def:
        out.append(
            f"At its defaults chancy runs diamonds at {d_def:,.1f} steps/s: its queue polls every "
            "5 s, runs as many jobs at once as there are cores, in a process pool, and writes "
            "job updates once a second."
        )
    h_pg, h_ch = m("chain", PGDAG, "job_hop_ms_p50"), m("chain", FASTEST, "job_hop_ms_p50")
    chains = find(summary, "workload", "chain", PGDAG)
    if h_pg is not None and h_ch is not None and chains is not None:
        out.append(
            f"A chain hop (dependency finished -> dependent started, {chains['shape']}) takes "
            f"{h_pg:,.1f} ms (p50) in pgdag and {h_ch:,.0f} ms in chancy at its fastest."
        )
    n_pg, n_ch = m("noop", PGDAG, "drain_jobs_per_s"), m("noop", FASTEST, "drain_jobs_per_s")
    ceiling = m("ceiling", SQL, "steps_per_s", "ceiling")
    if n_pg and n_ch and ceiling:
        out.append(
            f"No-op jobs drain at {n_pg:,.0f} jobs/s in pgdag ({n_pg / ceiling:.0%} of the bare "
            f"SQL ceiling of {ceiling:,.0f} steps/s) and {n_ch:,.0f} jobs/s in chancy "
            f"({n_ch / ceiling:.0%})."
        )
    cpu_pg = m("diamond", PGDAG, "postgres_cpu_s_per_1k")
    cpu_ch = m("diamond", FASTEST, "postgres_cpu_s_per_1k")
    w_pg = m("diamond", PGDAG, "pool_cpu_s_per_1k")
    w_ch = m("diamond", FASTEST, "pool_cpu_s_per_1k")
    if None not in (cpu_pg, cpu_ch, w_pg, w_ch):
        out.append(
            f"Per 1,000 diamond steps pgdag spends {w_pg:.2f} s of worker CPU and "
            f"{cpu_pg:.2f} s of PostgreSQL CPU; chancy {w_ch:.2f} s and {cpu_ch:.2f} s."
        )
    missed = [t for t in data["targets"] if t["result"] not in ("pass", "n/a")]
    unmeasured = [t for t in data["targets"] if t["result"] == "n/a"]
    if missed:
        out.append("Missed: " + "; ".join(f"{t['target']} ({t['measured']})" for t in missed) + ".")
    elif unmeasured:
        out.append(f"No target missed; {len(unmeasured)} not measured in this run.")
    else:
        out.append("Every target is met.")
    return out


def markdown_table(table: Table) -> str:
    title, header, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    """The generated section of RESULTS.md (between the markers, markers included)."""
    meta = data["meta"]
    params = data["params"]
    sha = meta["git_sha"] + (" (uncommitted changes)" if meta.get("git_dirty") else "")
    parts = [
        BEGIN,
        "",
        f"Generated by `python -m bench compare{' --quick' if params.get('quick') else ''}` "
        f"on {meta['at']}: git {sha}, PostgreSQL {meta['postgresql']}, {meta['cores']} cores, "
        f"Python {meta['python']}, chancy {meta.get('chancy', '?')}; "
        f"{params.get('repeat')} run(s) of each ({params.get('defaults_repeat')} of chancy at its "
        f"defaults), {meta.get('wall_seconds', 0) / 60:.1f} min in all. "
        "JSON: " + f"`{data.get('json_path', 'bench/results/')}`" + " (not committed).",
        "",
    ]
    for description in meta.get("settings", {}).values():
        parts.append(f"- {description}")
    parts.append("")
    for table in tables(data):
        if table[2]:
            parts += [markdown_table(table), ""]
    parts += ["Reading (generated from the figures above):", ""]
    parts += [" ".join(reading(data)), "", END]
    return "\n".join(parts)


def update_results(path: Path, section: str) -> None:
    """Replace the generated section of ``path`` (or append it after the hand-written text)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n## pgdag against chancy (`python -m bench compare`)\n\n"
        text += section + "\n"
    path.write_text(text)


def print_tables(data: dict[str, Any], printer: Callable[..., None]) -> None:
    """Every table through ``printer(title, header, rows, left=...)``, then the reading."""
    for title, header, rows in tables(data):
        if rows:
            printer(title, header, rows, left=2 if header[:2] == ["workload", "metric"] else 1)
    print()
    for line in reading(data):
        print(line)
