"""``make_plans_json``: a small hand-made nnU-Net v2 plans dict (one configuration, a PlainConvUNet).

Tests, benchmarks and examples that need plans without running the planner build them here instead of
writing the nested dict by hand each time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nnseg._checks import parse_int
from nnseg.planning._fields import building_blocks

__all__ = ["RESAMPLING", "make_plans_json"]

_LINEAR = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
RESAMPLING: dict[str, Any] = {
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": dict(_LINEAR),
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_seg_kwargs": {**_LINEAR, "is_seg": True, "order": 1},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {**_LINEAR, "order": 1},
}
"""nnU-Net's default resampling entries of a configuration (data order 3, segmentations and probabilities order 1)."""

STANDARD_INTENSITY = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
                      "percentile_99_5": 2.5, "percentile_00_5": -2.5}  # fmt: skip


def _plain_unet(ndim: int, stages: int, features: Sequence[int], convs: int, instance_norm: bool) -> dict[str, Any]:
    blocks = (
        building_blocks(ndim) if instance_norm else {**building_blocks(ndim), "norm_op": None, "norm_op_kwargs": None}
    )
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": stages, "features_per_stage": list(features),
                        "conv_op": f"torch.nn.modules.conv.Conv{ndim}d", "kernel_sizes": [[3] * ndim] * stages,
                        "strides": [[1] * ndim] + [[2] * ndim] * (stages - 1), "n_conv_per_stage": [convs] * stages,
                        "n_conv_per_stage_decoder": [convs] * (stages - 1), **blocks},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }  # fmt: skip


def make_plans_json(
    patch: Sequence[int], *, name: str = "3d_fullres", spacing: Sequence[float] | None = None,
    features: Sequence[int] = (8,), convs_per_stage: int = 1, instance_norm: bool = False,
    schemes: Sequence[str] = ("ZScoreNormalization",), use_mask: Sequence[bool] = (False,),
    intensity: Mapping[str, float] | None = None, transpose: Sequence[int] = (0, 1, 2), batch_size: int = 2,
    batch_dice: bool = True, median_shape: Sequence[int] | None = None, data_identifier: str | None = None,
    dataset_name: str = "Dataset001_Synthetic",
) -> dict[str, Any]:  # fmt: skip
    """Return an nnU-Net v2 plans dict with one configuration ``name`` (load it with ``Plans.from_json``).

    Args:
        patch: Patch size, 2 or 3 entries (the configuration is 2-D or 3-D accordingly).
        name: Configuration name.
        spacing: Target spacing (default 1.0 on every axis).
        features: Features per stage; its length is the number of stages (stride 1, then 2 per stage).
        convs_per_stage: Convolutions per encoder and decoder stage.
        instance_norm: Use instance normalisation (nnU-Net's) instead of none.
        schemes: Normalisation scheme per channel.
        use_mask: ``use_mask_for_norm`` per channel.
        intensity: Foreground intensity statistics of every channel (default: a standard normal's).
        transpose: ``transpose_forward`` (``transpose_backward`` is its inverse).
        batch_size: The configuration's batch size.
        batch_dice: The configuration's ``batch_dice``.
        median_shape: Median image shape (default: the largest patch edge on every axis).
        data_identifier: Default ``nnUNetPlans_<name>``.
        dataset_name: The plans' dataset name.

    Example:
        >>> plan = Plans.from_json(make_plans_json((32, 32, 32), features=(8, 16)))["3d_fullres"]
    """
    ndim = len(patch)
    parse_int("make_plans_json", "convs_per_stage", convs_per_stage, minimum=1)
    median = list(median_shape) if median_shape is not None else [max(patch)] * ndim
    configuration = {
        "data_identifier": data_identifier or f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size, "patch_size": list(patch),
        "median_image_size_in_voxels": [float(m) for m in median],
        "spacing": [1.0] * ndim if spacing is None else list(spacing),
        "normalization_schemes": list(schemes), "use_mask_for_norm": list(use_mask), **RESAMPLING,
        "architecture": _plain_unet(ndim, len(features), features, convs_per_stage, instance_norm),
        "batch_dice": batch_dice,
    }  # fmt: skip
    stats = dict(STANDARD_INTENSITY if intensity is None else intensity)
    return {
        "dataset_name": dataset_name, "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": [int(m) for m in median] + [int(median[-1])] * (3 - ndim),
        "image_reader_writer": "SimpleITKIO", "transpose_forward": list(transpose),
        "transpose_backward": [int(i) for i in np.argsort(transpose)], "configurations": {name: configuration},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(stats) for c in range(len(schemes))},
    }  # fmt: skip
