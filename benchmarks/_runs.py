"""The record of benchmark runs (``runs.json``) and the machine's load in it, as report text (used by run_all.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["IDLE_LOAD", "RUNS_FILE", "idle_warning", "load_row", "load_summary", "read_runs", "write_runs"]

RUNS_FILE = "runs.json"
IDLE_LOAD = 0.5  # a 1-minute load average above this is "not idle"


def read_runs(results_dir: Path) -> dict[str, Any]:
    """``<results_dir>/runs.json`` as ``{"note": str | None, "runs": [...]}`` (empty when absent or unreadable)."""
    path = results_dir / RUNS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"note": None, "runs": []}
    runs = data.get("runs") if isinstance(data, dict) else None
    return {"note": data.get("note") if isinstance(data, dict) else None,
            "runs": [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []}  # fmt: skip


def write_runs(results_dir: Path, runs: list[dict[str, Any]], note: str | None) -> None:
    """Merge ``runs`` into ``runs.json`` (a stage run again replaces its old record), atomically."""
    old = read_runs(results_dir)["runs"]
    fresh = {r.get("stage") for r in runs}
    merged = [r for r in old if r.get("stage") not in fresh] + runs
    path = results_dir / RUNS_FILE
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"note": note, "runs": merged}, indent=1) + "\n")
    os.replace(partial, path)


def idle_warning(snapshot: dict[str, Any]) -> str | None:
    """The "not idle" warning for a :func:`load_snapshot` whose 1-minute load is above :data:`IDLE_LOAD`."""
    load = snapshot.get("load_average") or []
    if not load or load[0] <= IDLE_LOAD:
        return None
    busy = ", ".join(
        f"{b.get('command', '?')} ({b.get('cpu', 0):.0%})" for b in snapshot.get("busy") or [] if isinstance(b, dict)
    )
    return (f"run_all.py: warning: the machine is not idle (1-minute load average {load[0]:.2f} > {IDLE_LOAD}; "
            f"{snapshot.get('other_busy', 0)} other busy process(es){': ' + busy if busy else ''}); "
            "the ratios will carry the other jobs' noise. Rerun on an idle machine for figures to quote.\n")  # fmt: skip


def _one_minute(snapshot: dict[str, Any]) -> str:
    load = snapshot.get("load_average")
    return f"{load[0]:.2f}" if isinstance(load, list) and load else "-"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _commands(*parts: dict[str, Any]) -> list[str]:
    """The distinct busy commands named in snapshots / monitor summaries, in order of appearance."""
    found = [b.get("command") for part in parts for b in part.get("busy") or [] if isinstance(b, dict)]
    return list(dict.fromkeys(str(c) for c in found if c))


def load_row(run: dict[str, Any]) -> list[str]:
    """Machine-section cells of one run: start, 1-minute load before / during / after, other busy processes."""
    load = _dict(run.get("load"))
    before, during, after = _dict(load.get("before")), _dict(load.get("during")), _dict(load.get("after"))
    seen = isinstance(during.get("load1_mean"), float | int) and isinstance(during.get("load1_max"), float | int)
    during_text = f"{during['load1_mean']:.2f} / {during['load1_max']:.2f}" if seen else "-"
    busy = (f"{before.get('other_busy', '-')} / {during.get('other_busy_max', '-') if seen else '-'} / "
            f"{after.get('other_busy', '-')}")  # fmt: skip
    return [str(run.get("stage", "?")), str(before.get("time", "-")), _one_minute(before), during_text,
            _one_minute(after), busy, ", ".join(_commands(before, during, after)[:5]) or "-"]  # fmt: skip


def load_summary(stage: str, runs: list[dict[str, Any]], data: Any) -> str:
    """Short load text for the goals table: from runs.json, else what the benchmark's JSON recorded itself."""
    run = next((r for r in reversed(runs) if r.get("stage") == stage and isinstance(r.get("load"), dict)), None)
    if run is not None:
        _, _, before, during, after, busy, _ = load_row(run)
        return f"{before} before, {during} during (mean / max), {after} after; other busy processes {busy}"
    found = []
    for where in (data, data.get("machine") if isinstance(data, dict) else None):
        if isinstance(where, dict):
            found += [f"{key} {_load_text(value)}" for key, value in where.items() if "load_average" in key]
    return ("from the benchmark's JSON: " + "; ".join(found)) if found else "-"


def _load_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_load_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in value)
    return str(value)
