"""Evaluation: Dice, IoU and confusion counts per label or region, in nnU-Net v2's ``summary.json`` layout.

Example:
    >>> from nnseg.evaluation import evaluate_folder
    >>> summary = evaluate_folder("work/pred", "raw/labelsTs", spec)
    >>> summary.save("work/pred/summary.json")
"""

from nnseg.evaluation._folder import EvaluationError, evaluate_case_files, evaluate_folder
from nnseg.evaluation._metrics import (
    METRIC_NAMES,
    LabelOrRegion,
    case_metrics,
    evaluated_labels,
    label_key,
    region_metrics,
)
from nnseg.evaluation._summary import CaseEvaluation, EvaluationSummary

__all__ = [
    "METRIC_NAMES",
    "CaseEvaluation",
    "EvaluationError",
    "EvaluationSummary",
    "LabelOrRegion",
    "case_metrics",
    "evaluate_case_files",
    "evaluate_folder",
    "evaluated_labels",
    "label_key",
    "region_metrics",
]
