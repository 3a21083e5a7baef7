"""Summary rows of each benchmark's JSON for the report (used by run_all.py)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

__all__ = ["SUMMARY_COLUMNS", "Row", "fmt", "summarize"]

Row = dict[str, str]
SUMMARY_COLUMNS = ("stage", "variant", "nnseg speed", "nnseg peak memory", "vs nnU-Net v2", "floor", "note")


def fmt(value: Any) -> str:
    """A JSON value as short report text (3 significant digits, sizes as 1x2x3)."""
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else json.dumps(value)
    return str(value)


def _ratio(ours: float | None, theirs: float | None, *, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "-"
    factor = ours / theirs if higher_is_better else theirs / ours
    return f"{factor:.2f}x {'faster' if factor >= 1 else 'slower'}"


def _row(
    stage: str, variant: str, speed: str, memory: str = "-", ratio: str = "-", floor: str = "-", note: str = ""
) -> Row:
    return dict(zip(SUMMARY_COLUMNS, (stage, variant, speed, memory, ratio, floor, note), strict=True))


def summarize_fingerprint(data: dict[str, Any]) -> list[Row]:
    """bench_fingerprint.py: rows ``variant / workers / seconds / peak_rss_mb``."""
    rows, cases = data.get("rows", []), data.get("cases") or 0
    out = []
    for workers in sorted({r["workers"] for r in rows}):
        by = {r["variant"]: r for r in rows if r["workers"] == workers}
        ours, theirs = by.get("nnseg"), by.get("nnunetv2")
        if ours is None:
            continue
        same = data.get("equal", {}).get("nnunetv2")
        out.append(_row("fingerprint", f"{workers} worker(s), {cases} cases", f"{cases / ours['seconds']:.2f} cases/s",
                        f"{ours['peak_rss_mb']} MB RSS",
                        _ratio(ours["seconds"], theirs and theirs["seconds"], higher_is_better=False),
                        note="" if same is None else f"same fingerprint as nnU-Net: {fmt(same)}"))  # fmt: skip
    return out


def summarize_preprocess(data: dict[str, Any]) -> list[Row]:
    """bench_preprocess.py: ``throughput`` rows per tool (nnseg, nnunetv2, io-floor) and worker count."""
    rows = data.get("throughput", [])
    out = []
    for workers in sorted({r["workers"] for r in rows}):
        by = {r["tool"]: r for r in rows if r["workers"] == workers}
        ours, theirs, floor = by.get("nnseg"), by.get("nnunetv2"), by.get("io-floor")
        if ours is None:
            continue
        out.append(_row("preprocess", f"{workers} worker(s), {ours['cases']} cases", f"{ours['cases_per_s']:.2f} cases/s",
                        f"{ours['peak_rss_mb']:.0f} MB RSS",
                        _ratio(ours["cases_per_s"], theirs and theirs["cases_per_s"], higher_is_better=True),
                        f"{floor['cases_per_s']:.2f} cases/s (IO only)" if floor else "-"))  # fmt: skip
    for fmt in data.get("formats", [])[:1]:
        out.append(_row("preprocess", f"store format: {fmt.get('format', '?')}", f"{fmt(fmt.get('patch_ms_cold'))} ms per patch (cold)",
                        note=f"compression ratio {fmt(fmt.get('ratio'))}"))  # fmt: skip
    return out


def summarize_planning(data: dict[str, Any]) -> list[Row]:
    """bench_planning.py: seconds per plan for each fingerprint and planner."""
    rows = data.get("rows", [])
    if not rows:
        return []
    ours = statistics.median(r["nnseg_s"] for r in rows)
    theirs_all = [r["nnunet_s"] for r in rows if r.get("nnunet_s")]
    ratios = [r["nnunet_s"] / r["nnseg_s"] for r in rows if r.get("nnunet_s") and r.get("nnseg_s")]
    same = [r.get("same_plans") for r in rows if r.get("same_plans") is not None]
    return [_row("planning", f"{len(rows)} fingerprint x planner pairs", f"{1000 * ours:.1f} ms per plan (median)",
                 ratio=f"{statistics.median(ratios):.0f}x faster (median)" if ratios else "-",
                 note=(f"same plans as nnU-Net in {sum(bool(s) for s in same)} of {len(same)}" if same else "")
                 + (f"; nnU-Net median {statistics.median(theirs_all):.2f} s" if theirs_all else ""))]  # fmt: skip


def summarize_dataloader(data: dict[str, Any]) -> list[Row]:
    """bench_dataloader.py: batches per second by worker count."""
    settings = data.get("settings", {})
    patch = fmt(settings.get("patch_size")) if settings.get("patch_size") else "?"
    out = []
    for r in data.get("throughput", []):
        ours, theirs = r.get("nnseg_batches_per_s"), r.get("nnunetv2_batches_per_s")
        out.append(_row("training data", f"{r.get('workers')} worker(s), patch {patch}, batch {settings.get('batch_size', '?')}",
                        f"{ours:.2f} batches/s" if ours else "-",
                        ratio=_ratio(ours, theirs, higher_is_better=True)))  # fmt: skip
    return out


def summarize_training(data: dict[str, Any]) -> list[Row]:
    """bench_training.py: ``timing`` (seconds per step by trainer) and ``budget`` (Dice after N steps)."""
    timing, budget = data.get("timing", {}), data.get("budget", {})
    plan = data.get("plan", {})
    ours = next((k for k in timing if k.startswith("nnseg")), None)
    if ours is None:
        return []
    theirs = next((k for k in timing if k.startswith("nnunet")), None)
    dice = ", ".join(f"{k} {fmt(v.get('dice'))}" for k, v in budget.items() if isinstance(v, dict))
    seeds = f" (mean of {data['seeds']} seeds)" if data.get("seeds", 1) > 1 else ""
    return [_row("training", f"patch {fmt(plan.get('patch_size'))}, batch {plan.get('batch_size', '?')}",
                 f"{timing[ours]:.3f} s per step",
                 ratio=_ratio(timing[ours], timing.get(theirs) if theirs else None, higher_is_better=False),
                 note=f"Dice after {data.get('budget_steps', '?')} steps{seeds}: {dice}" if dice else "")]  # fmt: skip


def summarize_predict(data: dict[str, Any]) -> list[Row]:
    """bench_predict.py: ``rows`` of seconds per case and peak RSS per tool, with and without mirror TTA."""
    rows = data.get("rows", [])
    out = []
    for row in rows:
        if row.get("tool", "").startswith("nnunet"):
            continue
        reference = next((r for r in rows if r.get("tool") == "nnunet" and r.get("tta") == row.get("tta")), None)
        agreement = row.get("agreement_with_nnunet")
        out.append(_row("prediction", f"{row['tool']}, TTA {'on' if row.get('tta') else 'off'}, {data.get('cases', '?')} cases",
                        f"{row['seconds_per_case']:.2f} s per case", f"{row['peak_rss_mb']:.0f} MB RSS",
                        _ratio(row["seconds_per_case"], reference and reference["seconds_per_case"], higher_is_better=False),
                        note="" if agreement is None else f"voxel agreement with nnU-Net {agreement:.6f}"))  # fmt: skip
    return out


def summarize_scale(data: dict[str, Any]) -> list[Row]:
    """bench_scale.py: time per case and peak RSS from the fewest to the most cases, per stage and worker count."""
    rows = [r for r in data.get("rows", []) if isinstance(r, dict)]
    out = []
    for stage, workers in dict.fromkeys((r.get("stage"), r.get("workers")) for r in rows):
        runs = sorted(
            (r for r in rows if r.get("stage") == stage and r.get("workers") == workers), key=lambda r: r["cases"]
        )
        small, large = runs[0], runs[-1]
        out.append(_row("scale", f"{stage}, {workers} worker(s), {small['cases']} -> {large['cases']} cases",
                        f"{fmt(small['ms_per_case'])} -> {fmt(large['ms_per_case'])} ms per case",
                        f"{fmt(small['peak_rss_mb'])} -> {fmt(large['peak_rss_mb'])} MB RSS",
                        note="ms per case include one process start-up, spread over the cases"))  # fmt: skip
    return out


SUMMARIZERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "fingerprint": summarize_fingerprint,
    "preprocess": summarize_preprocess,
    "planning": summarize_planning,
    "dataloader": summarize_dataloader,
    "training": summarize_training,
    "predict": summarize_predict,
    "scale": summarize_scale,
}


def summarize(stage: str, data: dict[str, Any]) -> list[Row]:
    """Summary rows of one benchmark's JSON (a generic row for a benchmark this script does not know yet)."""
    summarizer = SUMMARIZERS.get(stage)
    if summarizer is not None:
        try:
            rows = summarizer(data)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            return [
                _row(
                    stage, "-", "-", note=f"could not summarise the JSON ({type(err).__name__}: {err}); see the details"
                )
            ]
        if rows:
            return rows
    return [_row(stage, "-", "see the details below", note="no summary for this benchmark's JSON layout")]
