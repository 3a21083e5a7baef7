"""Pieces of hand-written nnU-Net plans shared by the tests that build plans dicts."""

from __future__ import annotations

from typing import Any

RESAMPLING: dict[str, Any] = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
}
"""nnU-Net's default resampling entries of a configuration (data order 3, segmentations and probabilities order 1)."""
