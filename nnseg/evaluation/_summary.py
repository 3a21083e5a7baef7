"""``EvaluationSummary``: per-case metrics and their means, in nnU-Net v2's ``summary.json`` layout.

The JSON form is exactly nnU-Net's::

    {"foreground_mean": {"Dice": ..., "IoU": ..., ...},
     "mean": {"1": {"Dice": ..., ...}, "(1, 2)": {...}},
     "metric_per_case": [{"reference_file": ..., "prediction_file": ..., "metrics": {"1": {...}}}]}

written with sorted keys. ``mean`` averages each metric over the cases ignoring NaN (a label absent from
reference and prediction); ``foreground_mean`` averages the per-label means, so a label that is NaN in
every case makes it NaN, as in nnU-Net.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.errors import ConfigError
from nnseg.evaluation._metrics import METRIC_NAMES

__all__ = ["CaseEvaluation", "EvaluationSummary"]

Metrics = Mapping[str, float | int]


@dataclass(frozen=True, slots=True)
class CaseEvaluation:
    """The metrics of one case.

    Args:
        reference_file: Path of the reference label map.
        prediction_file: Path of the prediction.
        metrics: Label key (``"1"``, ``"(1, 2)"``) -> metric name -> value.
    """

    reference_file: str
    prediction_file: str
    metrics: Mapping[str, Metrics]

    @property
    def case_id(self) -> str:
        """The prediction's file name without folder (nnU-Net keys cases by file)."""
        return Path(self.prediction_file).name

    def to_json(self) -> dict[str, Any]:
        """Return nnU-Net's ``metric_per_case`` entry."""
        return {
            "reference_file": self.reference_file,
            "prediction_file": self.prediction_file,
            "metrics": {key: dict(values) for key, values in self.metrics.items()},
        }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


@dataclass(frozen=True, slots=True)
class EvaluationSummary:
    """Metrics of every evaluated case and their means.

    Args:
        labels: The evaluated label / region keys, in evaluation order.
        cases: One :class:`CaseEvaluation` per evaluated case, sorted by prediction file.

    Example:
        >>> summary = evaluate_folder("work/pred", "raw/labelsTs", spec)
        >>> summary.mean_dice, summary.mean["1"]["Dice"]
        >>> summary.save("work/pred/summary.json")
    """

    labels: tuple[str, ...]
    cases: tuple[CaseEvaluation, ...]

    @property
    def mean(self) -> dict[str, dict[str, float]]:
        """Label key -> metric -> mean over the cases, NaN values skipped."""
        return {
            label: {name: _nanmean([float(c.metrics[label][name]) for c in self.cases]) for name in METRIC_NAMES}
            for label in self.labels
        }

    @property
    def foreground_mean(self) -> dict[str, float]:
        """Metric -> mean over the labels of :attr:`mean` (NaN if any label's mean is NaN)."""
        mean = self.mean
        if not mean:
            return {name: math.nan for name in METRIC_NAMES}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {name: float(np.mean([mean[label][name] for label in self.labels])) for name in METRIC_NAMES}

    @property
    def mean_dice(self) -> float:
        """The foreground mean Dice (the number nnU-Net reports for a fold)."""
        return self.foreground_mean["Dice"]

    def to_json(self) -> dict[str, Any]:
        """Return the ``summary.json`` content (nnU-Net's layout)."""
        return {
            "foreground_mean": self.foreground_mean,
            "mean": self.mean,
            "metric_per_case": [case.to_json() for case in self.cases],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "summary") -> EvaluationSummary:
        """Parse a ``summary.json`` dict (nnseg's or nnU-Net's).

        Raises:
            ConfigError: If the layout is not nnU-Net's.
        """
        try:
            labels = tuple(str(key) for key in data["mean"])
            cases = tuple(
                CaseEvaluation(str(entry["reference_file"]), str(entry["prediction_file"]), entry["metrics"])
                for entry in data["metric_per_case"]
            )
        except (KeyError, TypeError) as err:
            raise ConfigError(
                f"{where}: not a summary.json in nnU-Net's layout (missing {err}); expected keys 'mean' and "
                "'metric_per_case'."
            ) from err
        return cls(labels, cases)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``summary.json`` atomically (sorted keys, as nnU-Net)."""
        atomic_write_json(Path(path), self.to_json(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EvaluationSummary:
        """Read a ``summary.json``.

        Raises:
            ConfigError: If the file is missing, not JSON, or not in nnU-Net's layout.
        """
        path = Path(path)
        data = read_json_file(
            path, ConfigError, f"summary file {path} does not exist; write one with EvaluationSummary.save."
        )
        return cls.from_json(data, where=str(path))
