"""The speed goals of issue 18, checked against the benchmarks' JSON (used by run_all.py for the report).

Speed ratios are nnU-Net time / nnseg time from the same run (higher is better); memory and CPU-time ratios are
nnseg / nnU-Net (lower is better). Every key is read defensively: a missing or malformed value makes its goal
"not measured", never an error. A goal with several parts is "not met" as soon as one measured part misses,
"not measured" when a part is missing and none misses, and "met" only when every part is measured and passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GOAL_CHECKS", "MET", "NOT_MEASURED", "NOT_MET", "Goal", "check_goals"]

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"
LOADER_PATCH, LOADER_BATCH = [128, 128, 128], 2


@dataclass(frozen=True)
class Goal:
    """One goal row: which benchmark measures it, the goal, the measured value(s) and the verdict."""

    stage: str
    goal: str
    measured: str
    status: str


# ------------------------------------------------------------------------------------------------ reading
def _num(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, bool, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _div(top: Any, bottom: Any) -> float | None:
    """``top / bottom`` when both are numbers and ``bottom`` is positive, else None."""
    a, b = _num(top), _num(bottom)
    return None if a is None or b is None or b <= 0 else a / b


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _find(rows: Iterable[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The first row whose items include ``match`` (an empty dict when none does)."""
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), {})


def _status(*parts: bool | None) -> str:
    if any(p is False for p in parts):
        return NOT_MET
    return NOT_MEASURED if any(p is None for p in parts) else MET


def _at_least(value: float | None, goal: float) -> bool | None:
    return None if value is None else value >= goal


def _at_most(value: float | None, goal: float) -> bool | None:
    return None if value is None else value <= goal


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _per_workers(values: dict[int, float | None], goal: Callable[[float | None], bool | None]) -> tuple[str, str]:
    """(text, status) of one ratio measured at each worker count; met when every count meets it."""
    if not values:
        return "-", NOT_MEASURED
    text = ", ".join(f"{_x(v)} at {n} worker{'s' * (n != 1)}" for n, v in sorted(values.items()))
    return text, _status(*(goal(v) for v in values.values()))


# ------------------------------------------------------------------------------------------------ stages
def dataloader_goals(data: dict[str, Any]) -> list[Goal]:
    """Batches/s at 1 and 2 workers, scaling with workers, and CPU-seconds per batch (patch 128^3, batch 2)."""
    rows = {r.get("workers"): r for r in _dicts(data.get("throughput"))}
    goals = []
    for n in (1, 2):
        ratio = _div(rows.get(n, {}).get("nnseg_batches_per_s"), rows.get(n, {}).get("nnunetv2_batches_per_s"))
        goals.append(Goal("dataloader", f"data loader, {n} worker{'s' * (n > 1)}: >= 1.5x", _x(ratio),
                          _status(_at_least(ratio, 1.5))))  # fmt: skip
    one = rows.get(1, {}).get("nnseg_batches_per_s")
    scaling = {n: _div(r.get("nnseg_batches_per_s"), one) for n, r in rows.items() if isinstance(n, int) and n > 1}
    text = ", ".join(f"{n} workers = {_x(v)} one (needs {0.85 * n:.2f}x)" for n, v in sorted(scaling.items()))
    goals.append(Goal("dataloader", "data loader: N workers >= 0.85 N x one worker", text or "-",
                      _status(*(_at_least(v, 0.85 * n) for n, v in scaling.items())) if scaling else NOT_MEASURED))  # fmt: skip
    cpu = {n: _div(r.get("nnseg_cpu_s_per_batch"), r.get("nnunetv2_cpu_s_per_batch"))
           for n, r in rows.items() if isinstance(n, int) and n >= 1}  # fmt: skip
    text, status = _per_workers(cpu, lambda v: _at_most(v, 0.5))
    goals.append(Goal("dataloader", "data loader: CPU-s per batch <= 0.5x nnU-Net's", text, status))
    settings = _dict(data.get("settings"))
    patch, batch = settings.get("patch_size"), settings.get("batch_size")
    if rows and (patch != LOADER_PATCH or batch != LOADER_BATCH):  # measured, but not where the goal is set
        where = f" (patch {patch}, batch {batch}; the goal is at patch 128^3, batch 2)"
        goals = [Goal(g.stage, g.goal, g.measured + where, NOT_MEASURED) for g in goals]
    return goals


def fingerprint_goals(data: dict[str, Any]) -> list[Goal]:
    """>= 3x at <= 0.3x peak RSS, at 1 and at 2 workers."""
    rows = _dicts(data.get("rows"))
    goals = []
    for n in (1, 2):
        ours, theirs = _find(rows, variant="nnseg", workers=n), _find(rows, variant="nnunetv2", workers=n)
        speed, rss = (
            _div(theirs.get("seconds"), ours.get("seconds")),
            _div(ours.get("peak_rss_mb"), theirs.get("peak_rss_mb")),
        )
        goals.append(Goal("fingerprint", f"fingerprint, {n} worker{'s' * (n > 1)}: >= 3x at <= 0.3x peak RSS",
                          "-" if speed is None and rss is None else f"{_x(speed)} at {_x(rss)} peak RSS", _status(_at_least(speed, 3), _at_most(rss, 0.3))))  # fmt: skip
    return goals


def preprocess_goals(data: dict[str, Any]) -> list[Goal]:
    """>= 3x at 1 and 2 workers, 2 workers >= 1.7x one, within 1.5x of the IO-only floor, peak RSS <= 0.5x."""
    rows = _dicts(data.get("throughput"))
    workers = sorted({r["workers"] for r in rows if isinstance(r.get("workers"), int)})

    def row(tool: str, n: int) -> dict[str, Any]:
        return _find(rows, tool=tool, workers=n)

    goals = []
    for n in (1, 2):
        speed = _div(row("nnseg", n).get("cases_per_s"), row("nnunetv2", n).get("cases_per_s"))
        goals.append(Goal("preprocess", f"preprocessing, {n} worker{'s' * (n > 1)}: >= 3x", _x(speed),
                          _status(_at_least(speed, 3))))  # fmt: skip
    scaling = _div(row("nnseg", 2).get("cases_per_s"), row("nnseg", 1).get("cases_per_s"))
    goals.append(Goal("preprocess", "preprocessing: 2 workers >= 1.7x one", f"2 workers = {_x(scaling)} one",
                      _status(_at_least(scaling, 1.7))))  # fmt: skip
    floor = {n: _div(row("nnseg", n).get("seconds"), row("io-floor", n).get("seconds")) for n in workers}
    text, status = _per_workers({n: v for n, v in floor.items() if row("nnseg", n)}, lambda v: _at_most(v, 1.5))
    goals.append(
        Goal(
            "preprocess",
            "preprocessing: within 1.5x of the IO-only floor",
            text.replace("x at", "x the floor at"),
            status,
        )
    )
    rss = {n: _div(row("nnseg", n).get("peak_rss_mb"), row("nnunetv2", n).get("peak_rss_mb")) for n in workers}
    text, status = _per_workers({n: v for n, v in rss.items() if row("nnseg", n)}, lambda v: _at_most(v, 0.5))
    goals.append(Goal("preprocess", "preprocessing: peak RSS <= 0.5x nnU-Net's", text, status))
    return goals


MIN_KEYS = ("agreement_min", "agreement_with_nnunet_min", "min_agreement")  # lowest per-case voxel agreement
PER_CASE_KEYS = ("agreement_per_case", "agreement_with_nnunet_per_case", "per_case_agreement")  # list or {case: value}


def _agreement(row: dict[str, Any]) -> tuple[float | None, bool]:
    """(lowest per-case voxel agreement, True) when the row has per-case figures, else (the mean, False)."""
    for key in MIN_KEYS:
        lowest = _num(row.get(key))
        if lowest is not None:
            return lowest, True
    for key in PER_CASE_KEYS:
        per_case = row.get(key)
        values = per_case.values() if isinstance(per_case, dict) else per_case if isinstance(per_case, list) else []
        numbers = [v for v in (_num(x) for x in values) if v is not None]
        if numbers:
            return min(numbers), True
    return _num(row.get("agreement_with_nnunet")), False


def predict_goals(data: dict[str, Any]) -> list[Goal]:
    """Default numerics >= 2x at >= 99.9 % agreement per case; --nnunet-numerics identical and >= 1.2x."""
    rows = _dicts(data.get("rows"))
    goals = []
    for tool, name, speed_goal in (("nnseg", "default numerics", 2.0), ("nnseg-fp16", "--nnunet-numerics", 1.2)):
        for tta in (False, True):
            ours, theirs = _find(rows, tool=tool, tta=tta), _find(rows, tool="nnunet", tta=tta)
            speed = _div(theirs.get("seconds_per_case"), ours.get("seconds_per_case"))
            agreement, per_case = _agreement(ours)
            if tool == "nnseg":
                goal = f"prediction, {name}, TTA {'on' if tta else 'off'}: >= 2x at >= 99.9 % agreement on every case"
                agrees = _at_least(agreement, 0.999)
                shown = (
                    "-"
                    if agreement is None
                    else f"{100 * agreement:.3f} %" + (" (lowest case)" if per_case else " (mean only)")
                )
            else:  # identical voxels: a mean of exactly 1 already means every voxel of every case agrees
                goal = f"prediction, {name}, TTA {'on' if tta else 'off'}: identical voxels and >= 1.2x"
                agrees = None if agreement is None else agreement == 1.0
                shown = "-" if agreement is None else ("identical" if agrees else f"{100 * agreement:.4f} % agreement")
            measured = "-" if speed is None and agreement is None else f"{_x(speed)}, {shown}"
            goals.append(Goal("predict", goal, measured, _status(_at_least(speed, speed_goal), agrees)))
    return goals


def training_goals(data: dict[str, Any]) -> list[Goal]:
    """One optimiser step of the same network: >= 1.3x on CPU, never slower on CUDA."""
    timing = _dict(data.get("timing"))
    speed = _div(timing.get("nnunetv2"), timing.get("nnseg"))
    cuda = _div(timing.get("nnunetv2 (cuda)"), timing.get("nnseg (cuda)"))
    return [
        Goal("training", "training step, same network, CPU: >= 1.3x", _x(speed), _status(_at_least(speed, 1.3))),
        Goal("training", "training step, same network, CUDA: never slower (>= 1x)",
             _x(cuda) if cuda is not None else "no CUDA figures in this run", _status(_at_least(cuda, 1.0))),
    ]  # fmt: skip


GOAL_CHECKS: dict[str, Callable[[dict[str, Any]], list[Goal]]] = {
    "dataloader": dataloader_goals,
    "fingerprint": fingerprint_goals,
    "preprocess": preprocess_goals,
    "predict": predict_goals,
    "training": training_goals,
}


def check_goals(results: dict[str, Any]) -> list[Goal]:
    """Every goal row, in issue order, from ``{stage: that benchmark's JSON}`` (missing stages: not measured)."""
    goals: list[Goal] = []
    for stage, check in GOAL_CHECKS.items():
        data = results.get(stage)
        try:
            rows = check(data if isinstance(data, dict) else {})
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            goals.append(Goal(stage, f"{stage}: every goal", f"could not read {stage}.json ({err})", NOT_MEASURED))
            continue
        if not isinstance(data, dict):
            rows = [Goal(g.stage, g.goal, f"no {stage}.json", NOT_MEASURED) for g in rows]
        goals += rows
    return goals
