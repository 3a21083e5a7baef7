"""Evaluation: Dice, IoU and confusion counts per label or region, in nnU-Net v2's ``summary.json`` layout.

Example:
    >>> from nnseg.evaluation import evaluate_folder
    >>> summary = evaluate_folder("work/pred", "raw/labelsTs", spec)
    >>> summary.save("work/pred/summary.json")
"""

from nnseg._deprecation import moved_names
from nnseg.evaluation._folder import evaluate_folder
from nnseg.evaluation._metrics import case_metrics
from nnseg.evaluation._summary import EvaluationSummary

__all__ = ["EvaluationSummary", "case_metrics", "evaluate_folder"]

__getattr__ = moved_names(__name__, {
    "CaseEvaluation": "nnseg.evaluation._summary",
    "EvaluationError": "nnseg.errors",
    "LabelOrRegion": "nnseg.evaluation._metrics",
    "METRIC_NAMES": "nnseg.evaluation._metrics",
    "evaluate_case_files": "nnseg.evaluation._folder",
    "evaluated_labels": "nnseg.evaluation._metrics",
    "label_key": "nnseg.evaluation._metrics",
    "region_metrics": "nnseg.evaluation._metrics",
})  # fmt: skip
