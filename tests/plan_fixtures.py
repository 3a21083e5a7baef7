"""Pieces of hand-written nnU-Net plans shared by the tests that build plans dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESAMPLING: dict[str, Any] = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
}
"""nnU-Net's default resampling entries of a configuration (data order 3, segmentations and probabilities order 1)."""


def plain_unet(ndim: int, stages: int = 1, features: Sequence[int] | None = None) -> dict[str, Any]:
    """The ``architecture`` entry of a small PlainConvUNet: one conv per stage, stride 2 after stage 0, no norm."""
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": stages, "features_per_stage": list(features or [8] * stages),
                        "conv_op": f"torch.nn.modules.conv.Conv{ndim}d", "kernel_sizes": [[3] * ndim] * stages,
                        "strides": [[1] * ndim] + [[2] * ndim] * (stages - 1), "n_conv_per_stage": [1] * stages,
                        "n_conv_per_stage_decoder": [1] * (stages - 1), "conv_bias": True,
                        "norm_op": None, "norm_op_kwargs": None, "dropout_op": None, "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }  # fmt: skip


def one_configuration_plans(
    name: str,
    *,
    spacing: Sequence[float],
    patch: Sequence[int],
    intensity: dict[str, float],
    schemes: Sequence[str] = ("ZScoreNormalization",),
    use_mask: Sequence[bool] = (False,),
    transpose: Sequence[int] = (0, 1, 2),
    stages: int = 1,
    features: Sequence[int] | None = None,
    batch_size: int = 2,
    median_size: float | None = None,
    data_identifier: str | None = None,
) -> dict[str, Any]:
    """An nnU-Net v2 plans dict holding one configuration ``name`` (``intensity`` for every channel)."""
    ndim = len(patch)
    configuration = {
        "data_identifier": data_identifier or f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size, "patch_size": list(patch),
        "median_image_size_in_voxels": [float(median_size or max(patch))] * ndim, "spacing": list(spacing),
        "normalization_schemes": list(schemes), "use_mask_for_norm": list(use_mask), **RESAMPLING,
        "architecture": plain_unet(ndim, stages, features), "batch_dice": True,
    }  # fmt: skip
    shape = int(median_size or max(patch))
    return {
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [shape] * 3,
        "image_reader_writer": "SimpleITKIO", "transpose_forward": list(transpose),
        "transpose_backward": [int(i) for i in np.argsort(transpose)], "configurations": {name: configuration},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(intensity) for c in range(len(schemes))},
    }  # fmt: skip
