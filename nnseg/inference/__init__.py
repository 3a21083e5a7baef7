"""Inference: sliding-window prediction with mirroring and Gaussian blending (more to come: the Predictor).

Example:
    >>> from nnseg.inference import predict_logits
    >>> logits = predict_logits(network.eval(), data, patch_size=(64, 64, 64), num_outputs=3, mirror_axes=(0, 1, 2))
"""

from nnseg.inference._sliding_window import mirror_axis_combinations, predict_logits, predict_tile
from nnseg.inference._tiling import gaussian_importance_map, padding_for_patch, tile_positions, tile_slices

__all__ = [
    "gaussian_importance_map",
    "mirror_axis_combinations",
    "padding_for_patch",
    "predict_logits",
    "predict_tile",
    "tile_positions",
    "tile_slices",
]
