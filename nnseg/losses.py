"""Losses: nnU-Net's Dice + cross-entropy, Dice + BCE for regions, and the deep-supervision wrapper.

A base-layer module: the trainer (through ``nnseg.training``) and the planner's memory trace both use these
kernels, so the step whose memory the planner measures is the step the trainer runs.

* Labels: ``CE + Dice`` where Dice is a soft Dice over the foreground classes of the softmax (background
  excluded, ``smooth = 1e-5``), returned negated, so the total can be below zero, as in nnU-Net.
* Regions: ``BCE-with-logits + Dice`` over the sigmoid of every region (background is not a region).
* The ignore label (labels) or the last target channel (regions) masks voxels out of both terms.
* Deep supervision: weights ``1 / 2**i`` with the lowest resolution weighted 0, normalised to sum to 1.

Targets: label maps ``(b, 1, *spatial)`` for labels; one-hot ``(b, regions [+ 1 ignore channel], *spatial)``
for regions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnseg._checks import parse_int
from nnseg.errors import ConfigError

__all__ = [
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "DiceCELoss",
    "SoftDiceLoss",
    "deep_supervision_weights",
    "full_resolution",
]

DICE_SMOOTH = 1e-5


class SoftDiceLoss(nn.Module):
    """Negative mean soft Dice of probabilities against a one-hot target.

    Args:
        batch_dice: Sum over the batch as well as space (one Dice per class), as nnU-Net's ``batch_dice``.
        smooth: Added to numerator and denominator.
    """

    def __init__(self, *, batch_dice: bool, smooth: float = DICE_SMOOTH) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.smooth = smooth

    def forward(self, probs: torch.Tensor, onehot: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``-mean(dice)``; ``probs`` and ``onehot`` are ``(b, c, ...)``, ``mask`` ``(b, 1, ...)``."""
        axes = tuple(range(2, probs.ndim))
        with torch.no_grad():
            target = onehot.to(probs.dtype)
            if mask is not None:
                target = target * mask
            sum_gt = target.sum(axes)
        masked = probs if mask is None else probs * mask
        intersect = (masked * target).sum(axes)
        sum_pred = masked.sum(axes)
        if self.batch_dice:
            intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
        dice = (2 * intersect + self.smooth) / torch.clip(sum_gt + sum_pred + self.smooth, 1e-8)
        return -dice.mean()


class DiceCELoss(nn.Module):
    """``weight_ce * CE + weight_dice * Dice`` for label maps (softmax output).

    Args:
        batch_dice: See :class:`SoftDiceLoss`.
        ignore_label: Voxels with this value count in neither term; None when the dataset has none.
        weight_ce: Weight of the cross-entropy term.
        weight_dice: Weight of the Dice term.
    """

    def __init__(
        self, *, batch_dice: bool, ignore_label: int | None = None, weight_ce: float = 1.0, weight_dice: float = 1.0
    ) -> None:
        super().__init__()
        self.ignore_label = ignore_label
        self.weight_ce, self.weight_dice = weight_ce, weight_dice
        self.dice = SoftDiceLoss(batch_dice=batch_dice)
        self.ce = nn.CrossEntropyLoss(ignore_index=ignore_label if ignore_label is not None else -100)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``(b, classes, ...)`` against a label map ``(b, 1, ...)``."""
        labels = target[:, 0].long()
        mask = None
        if self.ignore_label is not None:
            keep = labels != self.ignore_label
            mask = keep[:, None].to(logits.dtype)
            dice_labels = torch.where(keep, labels, torch.zeros_like(labels))
        else:
            dice_labels = labels
        onehot = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, dice_labels[:, None], True)
        probs = torch.softmax(logits, 1)
        dice = self.dice(probs[:, 1:], onehot[:, 1:], mask)
        annotated = mask is None or bool(mask.sum() > 0)
        ce = self.ce(logits, labels) if annotated else logits.new_zeros(())
        return self.weight_ce * ce + self.weight_dice * dice


class DiceBCELoss(nn.Module):
    """``BCE-with-logits + Dice`` for region-based training (sigmoid output).

    Args:
        batch_dice: See :class:`SoftDiceLoss`.
        has_ignore_channel: The target's last channel marks ignored voxels (the dataset has an ignore label).
        weight_ce: Weight of the BCE term.
        weight_dice: Weight of the Dice term.
    """

    def __init__(
        self, *, batch_dice: bool, has_ignore_channel: bool = False, weight_ce: float = 1.0, weight_dice: float = 1.0
    ) -> None:
        super().__init__()
        self.has_ignore_channel = has_ignore_channel
        self.weight_ce, self.weight_dice = weight_ce, weight_dice
        self.dice = SoftDiceLoss(batch_dice=batch_dice)
        self.bce = nn.BCEWithLogitsLoss(reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``(b, regions, ...)`` against a one-hot target (plus the ignore channel)."""
        mask = None
        if self.has_ignore_channel:
            mask = 1 - target[:, -1:].to(logits.dtype)
            target = target[:, :-1]
        target = target.to(logits.dtype)
        dice = self.dice(torch.sigmoid(logits), target, mask)
        bce = self.bce(logits, target)
        if mask is None:
            bce_term = bce.mean()
        else:
            # summed over region channels, divided by the number of kept voxels (nnU-Net's normalisation)
            bce_term = (bce * mask).sum() / torch.clip(mask.sum(), 1e-8)
        return self.weight_ce * bce_term + self.weight_dice * dice


def full_resolution(outputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The highest-resolution output of a network, whether or not it returns one output per scale."""
    return outputs[0] if isinstance(outputs, list | tuple) else outputs  # type: ignore[return-value]


def deep_supervision_weights(num_outputs: int, *, lowest_weight: float = 0.0) -> tuple[float, ...]:
    """nnU-Net's deep-supervision weights: ``1 / 2**i``, the last set to 0, normalised to sum to 1.

    Under DDP nnU-Net sets the last raw weight to ``1e-6`` instead of 0 (``lowest_weight``), so that every
    parameter receives a gradient and DistributedDataParallel does not stop on unused parameters.

    Example:
        >>> [round(w, 3) for w in deep_supervision_weights(5)]
        [0.533, 0.267, 0.133, 0.067, 0.0]
    """
    parse_int("deep_supervision_weights", "num_outputs", num_outputs, minimum=1)
    if num_outputs == 1:
        return (1.0,)
    raw = [1 / 2**i for i in range(num_outputs)]
    raw[-1] = float(lowest_weight)
    total = sum(raw)
    return tuple(w / total for w in raw)


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``loss`` over the network's outputs (highest resolution first) and their targets.

    Args:
        loss: The per-scale loss, called as ``loss(output, target)``.
        weights: One weight per output; terms with weight 0 are not computed.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        self.loss = loss
        self.weights = tuple(float(w) for w in weights)

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return ``sum(w_i * loss(outputs[i], targets[i]))``."""
        if len(outputs) != len(self.weights) or len(targets) != len(self.weights):
            raise ConfigError(
                f"deep supervision: got {len(outputs)} output(s) and {len(targets)} target(s) for "
                f"{len(self.weights)} weight(s); expected one of each per weight."
            )
        terms = [w * self.loss(o, t) for w, o, t in zip(self.weights, outputs, targets, strict=True) if w != 0]
        return torch.stack(terms).sum()
