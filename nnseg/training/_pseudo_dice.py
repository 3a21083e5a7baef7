"""The validation pseudo-Dice: true/false positives and false negatives per class, summed over batches.

As nnU-Net: the highest-resolution output is turned into a segmentation (argmax for labels, sigmoid > 0.5 for
regions), background is left out, voxels of the ignore label do not count, and the Dice per class is
``2 TP / (2 TP + FP + FN)`` over everything accumulated in one validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["ConfusionCounts", "confusion_counts"]


def confusion_counts(
    logits: torch.Tensor, target: torch.Tensor, *, regions: bool, ignore_label: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TP, FP and FN per foreground class (or region) of one batch, as int64 CPU tensors.

    Args:
        logits: ``(b, c, ...)`` network output at full resolution.
        target: Label map ``(b, 1, ...)``, or one-hot regions ``(b, r [+ 1 ignore channel], ...)``.
        regions: Region-based training (sigmoid outputs).
        ignore_label: The dataset's ignore label (labels), or any value meaning "the last target channel is
            the ignore mask" (regions); None when there is none.
    """
    if regions:
        keep = None
        if ignore_label is not None:
            keep, target = ~target[:, -1:].bool(), target[:, :-1]
        predicted, truth = torch.sigmoid(logits.float()) > 0.5, target.bool()
    else:
        labels = target[:, 0].long()
        keep = (labels != ignore_label)[:, None] if ignore_label is not None else None
        classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, *[1] * (logits.ndim - 2))
        predicted = logits.argmax(1, keepdim=True) == classes
        truth = labels[:, None] == classes
    if keep is not None:
        predicted, truth = predicted & keep, truth & keep
    axes = [0, *range(2, logits.ndim)]
    tp = (predicted & truth).sum(axes)
    fp = (predicted & ~truth).sum(axes)
    fn = (~predicted & truth).sum(axes)
    return tp.cpu(), fp.cpu(), fn.cpu()


@dataclass
class ConfusionCounts:
    """Running TP/FP/FN per class over one validation."""

    tp: list[int] = field(default_factory=list)
    fp: list[int] = field(default_factory=list)
    fn: list[int] = field(default_factory=list)

    def add(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> None:
        """Add one batch's counts."""
        if not self.tp:
            self.tp, self.fp, self.fn = [0] * len(tp), [0] * len(fp), [0] * len(fn)
        for i in range(len(tp)):
            self.tp[i] += int(tp[i])
            self.fp[i] += int(fp[i])
            self.fn[i] += int(fn[i])

    def dice_per_class(self) -> list[float]:
        """``2 TP / (2 TP + FP + FN)`` per class; NaN for a class absent from prediction and truth."""
        return [
            2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else math.nan
            for tp, fp, fn in zip(self.tp, self.fp, self.fn, strict=True)
        ]

    def mean_dice(self) -> float:
        """Mean Dice over the classes that are not NaN (NaN when all are)."""
        values = [d for d in self.dice_per_class() if not math.isnan(d)]
        return sum(values) / len(values) if values else math.nan
