"""The training losses; they live in :mod:`nnseg.losses` (base layer) and are re-exported here."""

from nnseg.losses import (
    DICE_SMOOTH,
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceCELoss,
    SoftDiceLoss,
    deep_supervision_weights,
    full_resolution,
)

__all__ = [
    "DICE_SMOOTH",
    "DeepSupervisionLoss",
    "DiceBCELoss",
    "DiceCELoss",
    "SoftDiceLoss",
    "deep_supervision_weights",
    "full_resolution",
]
