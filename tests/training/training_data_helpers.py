"""Helpers of the training-data tests: tiny plans, specs and preprocessed stores written directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from plan_fixtures import RESAMPLING
from scipy.ndimage import gaussian_filter

from nnseg.dataset import DatasetSpec
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._locations import location_classes, sample_class_locations
from nnseg.preprocessing._store import PreprocessedStore

INTENSITY = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
             "percentile_99_5": 2.5, "percentile_00_5": -2.5}  # fmt: skip


def make_plan(
    patch: Sequence[int] = (16, 16, 16), batch_size: int = 2, use_mask: Sequence[bool] = (False,), stages: int = 3
) -> ConfigurationPlan:
    """A minimal configuration with ``stages`` stages of stride 2 (stage 0 stride 1)."""
    ndim = len(patch)
    name = "2d" if ndim == 2 else "3d_fullres"
    conv = "torch.nn.modules.conv.Conv3d" if ndim == 3 else "torch.nn.modules.conv.Conv2d"
    strides = [[1] * ndim] + [[2] * ndim] * (stages - 1)
    configuration = {
        "data_identifier": f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": batch_size, "patch_size": list(patch), "median_image_size_in_voxels": [24.0] * ndim,
        "spacing": [1.0] * ndim, "normalization_schemes": ["ZScoreNormalization"] * len(use_mask),
        "use_mask_for_norm": list(use_mask), **RESAMPLING,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": stages, "features_per_stage": [4] * stages, "conv_op": conv,
                                         "kernel_sizes": [[3] * ndim] * stages, "strides": strides,
                                         "n_conv_per_stage": [1] * stages, "n_conv_per_stage_decoder": [1] * (stages - 1),
                                         "conv_bias": True, "norm_op": None, "norm_op_kwargs": None,
                                         "dropout_op": None, "dropout_op_kwargs": None,
                                         "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": True,
    }  # fmt: skip
    plans: dict[str, Any] = {
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [24, 24, 24],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {name: configuration}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(INTENSITY) for c in range(len(use_mask))},
    }  # fmt: skip
    return Plans.from_json(plans)[name]


def make_spec(labels: dict[str, Any] | None = None, num_channels: int = 1) -> DatasetSpec:
    """Labels background/low/high by default."""
    labels = labels or {"background": 0, "low": 1, "high": 2}
    regions = {"regions_class_order": [1, 2]} if any(isinstance(v, tuple) for v in labels.values()) else {}
    return DatasetSpec(channel_names=tuple(f"T{c}" for c in range(num_channels)), labels=labels, num_training=1,
                       file_ending=".nii.gz", **regions)  # fmt: skip


def threshold_case(shape: Sequence[int], seed: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image whose label is a threshold of channel 0: 1 above 0.3, 2 above 1.0."""
    rng = np.random.default_rng(seed)
    image = np.stack([gaussian_filter(rng.standard_normal(tuple(shape)), 2.0) for _ in range(channels)])
    image = (image / image.std()).astype(np.float32)
    seg = ((image[:1] > 0.3).astype(np.int8) + (image[:1] > 1.0).astype(np.int8)).astype(np.int8)
    return image, seg


def write_store(
    root: Path,
    plan: ConfigurationPlan,
    spec: DatasetSpec,
    cases: dict[str, tuple[np.ndarray, np.ndarray | None]],
) -> PreprocessedStore:
    """Write arrays as complete cases of a new store."""
    store = PreprocessedStore(root)
    store.initialise(plan, spec)
    for case_id, (data, seg) in cases.items():
        shape = tuple(int(v) for v in data.shape[1:])
        properties = CaseProperties(spacing=(1.0, 1.0, 1.0), transpose_forward=(0, 1, 2), shape_before_cropping=shape,
                                    bbox_used_for_cropping=tuple((0, s) for s in shape),
                                    shape_after_cropping_and_before_resampling=shape, shape_after_resampling=shape,
                                    target_spacing=(1.0, 1.0, 1.0))  # fmt: skip
        locations = None if seg is None else sample_class_locations(seg, location_classes(spec))
        store.write_case(PreprocessedCase(case_id, data, seg, properties, locations))
    return store
