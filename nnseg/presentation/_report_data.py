"""What a report shows, read from a run or work folder: plan, metrics, evaluations, timings, candidates."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg.errors import ConfigError

__all__ = ["Evaluation", "ReportSource", "RunData", "load_evaluation", "load_source"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Evaluation:
    """A ``summary.json`` and where it came from.

    Args:
        title: Section title, e.g. ``"validation"``.
        path: The summary file.
        data: Its parsed content (nnU-Net's layout).
    """

    title: str
    path: Path
    data: dict[str, Any]

    def label_keys(self) -> list[str]:
        """Label keys of the summary, in its order."""
        return [str(k) for k in self.data.get("mean", {})]

    def cases(self) -> list[tuple[str, dict[str, float], Path, Path]]:
        """``(case id, label -> Dice, prediction file, reference file)`` per case."""
        rows = []
        for entry in self.data.get("metric_per_case", []):
            prediction = Path(str(entry.get("prediction_file", "")))
            dice = {str(k): _number(v.get("Dice")) for k, v in entry.get("metrics", {}).items()}
            rows.append((_strip_ending(prediction.name), dice, prediction, Path(str(entry.get("reference_file", "")))))
        return rows

    def worst(self, count: int) -> list[tuple[str, dict[str, float], Path, Path]]:
        """The ``count`` cases with the lowest mean Dice over labels (NaN labels ignored)."""

        def mean_dice(row: tuple[str, dict[str, float], Path, Path]) -> float:
            values = [v for v in row[1].values() if not math.isnan(v)]
            return sum(values) / len(values) if values else math.inf

        return sorted(self.cases(), key=mean_dice)[:count]


@dataclass(frozen=True)
class RunData:
    """Everything a report shows about one run folder.

    Args:
        path: The run folder.
        name: Its name relative to the work folder, e.g. ``nnUNetPlans__3d_fullres__demo/fold_all``.
        run: ``run.json``.
        metrics: The lines of ``metrics.jsonl``.
        evaluations: Summaries of the run's validation and of extra prediction folders.
    """

    path: Path
    name: str
    run: dict[str, Any]
    metrics: list[dict[str, Any]]
    evaluations: list[Evaluation] = field(default_factory=list)

    def training_seconds(self) -> float:
        """Wall time of the logged training steps (seconds per step times steps, per epoch)."""
        total, previous = 0.0, 0
        for line in self.metrics:
            step, seconds = int(line.get("step", previous)), _number(line.get("seconds_per_step"))
            if not math.isnan(seconds):
                total += seconds * max(step - previous, 0)
            previous = step
        return total


@dataclass(frozen=True)
class ReportSource:
    """The folder a report is made from.

    Args:
        path: The run or work folder.
        runs: Its runs (one for a run folder).
        timings: Stage name -> seconds, from ``timings.json`` next to the runs (e.g. written by the demo).
        best: ``best.json`` of a work folder, if present.
    """

    path: Path
    runs: list[RunData]
    timings: dict[str, float]
    best: dict[str, Any] | None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _strip_ending(name: str) -> str:
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".bmp", ".tif", ".tiff", ".npy"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"report: cannot read {path} ({err}); expected a JSON file. Repair or remove it.") from err


def load_evaluation(path: PathLike, title: str) -> Evaluation:
    """Read a ``summary.json`` (or a folder holding one) as an :class:`Evaluation`.

    Raises:
        ConfigError: If there is no readable summary.
    """
    path = Path(path)
    path = path / "summary.json" if path.is_dir() else path
    if not path.is_file():
        raise ConfigError(f"report: no evaluation summary at {path}; run `nnseg evaluate PRED REF` first.")
    data = _read_json(path)
    if not isinstance(data, dict) or "metric_per_case" not in data:
        raise ConfigError(f"report: {path} is not a summary.json (no 'metric_per_case'); pass an evaluation summary.")
    return Evaluation(title, path, data)


def _load_run(path: Path, root: Path) -> RunData:
    metrics_path = path / "metrics.jsonl"
    lines = metrics_path.read_text().splitlines() if metrics_path.is_file() else []
    metrics = [json.loads(line) for line in lines if line.strip()]
    evaluations = []
    if (path / "validation" / "summary.json").is_file():
        evaluations.append(load_evaluation(path / "validation" / "summary.json", "validation (full cases)"))
    name = path.relative_to(root).as_posix() if path != root else path.name
    return RunData(path, name, _read_json(path / "run.json"), metrics, evaluations)


def load_source(folder: PathLike) -> ReportSource:
    """Read a run folder (it has ``run.json``) or a work folder (``workspace.json`` or ``runs/``).

    Raises:
        ConfigError: If ``folder`` is neither, or a work folder without any run.
    """
    folder = Path(folder)
    if (folder / "run.json").is_file():
        work = folder.parents[2] if len(folder.parents) > 2 and (folder.parents[2] / "runs").is_dir() else None
        timings = _timings(work) if work is not None else {}
        return ReportSource(folder, [_load_run(folder, folder)], timings, None)
    if not folder.is_dir() or not ((folder / "workspace.json").is_file() or (folder / "runs").is_dir()):
        raise ConfigError(
            f"report: {folder} is not a run folder (no run.json) nor a work folder (no workspace.json or runs/); "
            "expected WORK or WORK/runs/<plans>__<configuration>__<run>/fold_<k>. Pass one of those folders."
        )
    run_dirs = sorted(p.parent for p in (folder / "runs").glob("*/*/run.json"))
    if not run_dirs:
        raise ConfigError(f"report: work folder {folder} holds no training run yet (no runs/*/fold_*/run.json); "
                          "train one with `nnseg train` first.")  # fmt: skip
    best = _read_json(folder / "best.json") if (folder / "best.json").is_file() else None
    return ReportSource(folder, [_load_run(p, folder / "runs") for p in run_dirs], _timings(folder), best)


def _timings(work: Path) -> dict[str, float]:
    path = work / "timings.json"
    data = _read_json(path) if path.is_file() else {}
    return {str(k): _number(v) for k, v in data.items()} if isinstance(data, dict) else {}
