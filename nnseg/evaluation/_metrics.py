"""Per-case segmentation metrics: confusion counts, Dice and IoU per label or region (pure functions).

The rules are nnU-Net v2's:

* a label ``k`` is the voxels equal to ``k``; a region ``(a, b)`` is the voxels holding any of its labels;
* voxels whose *reference* value is the ignore label are left out of every count;
* ``Dice = 2 TP / (2 TP + FP + FN)`` and ``IoU = TP / (TP + FP + FN)``, both NaN when reference and
  prediction are both empty (``TP + FP + FN == 0``);
* background is never evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError

__all__ = ["METRIC_NAMES", "LabelOrRegion", "case_metrics", "evaluated_labels", "label_key", "region_metrics"]

LabelOrRegion = int | tuple[int, ...]
"""What one metric entry is computed for: a label value or a region (tuple of label values)."""

METRIC_NAMES = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")
"""The metrics of each label or region, in nnU-Net's order."""


def label_key(label: LabelOrRegion) -> str:
    """Key of a label or region in ``summary.json``: ``"1"`` or ``"(1, 2)"`` (``str`` of the int / tuple)."""
    if isinstance(label, tuple):
        return str(tuple(int(v) for v in label))
    return str(int(label))


def evaluated_labels(spec: DatasetSpec) -> tuple[LabelOrRegion, ...]:
    """The labels (or, for region-based datasets, the regions) that are evaluated: everything but background.

    Regions keep the form of ``dataset.json``: a list value becomes a tuple, an int stays an int.
    """
    if not spec.has_regions:
        return spec.foreground_labels
    return tuple(value for name, value in spec.labels.items() if name not in ("background", "ignore"))


def _mask(array: np.ndarray, label: LabelOrRegion) -> np.ndarray:
    if isinstance(label, tuple):
        return np.isin(array, label)
    return array == label


def region_metrics(
    reference: np.ndarray, prediction: np.ndarray, label: LabelOrRegion, ignore_mask: np.ndarray | None = None
) -> dict[str, float | int]:
    """Confusion counts, Dice and IoU of one label or region.

    Args:
        reference: Reference label map.
        prediction: Predicted label map of the same shape.
        label: The label value or region.
        ignore_mask: Voxels to leave out (True = ignored), or None.

    Returns:
        ``{"Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref"}``; counts are ints, Dice and IoU floats
        (NaN when both masks are empty).
    """
    ref = _mask(reference, label)
    pred = _mask(prediction, label)
    keep = np.ones_like(ref) if ignore_mask is None else ~ignore_mask
    tp = int(np.count_nonzero(ref & pred & keep))
    fp = int(np.count_nonzero(~ref & pred & keep))
    fn = int(np.count_nonzero(ref & ~pred & keep))
    tn = int(np.count_nonzero(~ref & ~pred & keep))
    union = tp + fp + fn
    dice = 2 * tp / (2 * tp + fp + fn) if union else math.nan
    iou = tp / union if union else math.nan
    return {"Dice": dice, "IoU": iou, "FP": fp, "TP": tp, "FN": fn, "TN": tn, "n_pred": tp + fp, "n_ref": tp + fn}


def case_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    labels: Sequence[LabelOrRegion],
    *,
    ignore_label: int | None = None,
    where: str = "case",
) -> dict[str, dict[str, float | int]]:
    """Metrics of every label or region of one case, keyed by :func:`label_key`.

    Args:
        reference: Reference label map.
        prediction: Predicted label map.
        labels: Labels or regions to evaluate (see :func:`evaluated_labels`).
        ignore_label: Reference voxels with this value are left out, or None.
        where: Names the case in error messages.

    Raises:
        ConfigError: If the two maps differ in shape.
    """
    reference = np.asarray(reference)
    prediction = np.asarray(prediction)
    if reference.shape != prediction.shape:
        raise ConfigError(
            f"{where}: prediction shape {prediction.shape} differs from reference shape {reference.shape}; "
            "a prediction must be written on the grid of its reference image."
        )
    ignore_mask = None if ignore_label is None else reference == ignore_label
    return {label_key(label): region_metrics(reference, prediction, label, ignore_mask) for label in labels}
