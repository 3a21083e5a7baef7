"""Helpers of the training-data tests: tiny plans, specs and preprocessed stores written directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from nnseg.dataset import DatasetSpec
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._locations import location_classes, sample_class_locations
from nnseg.preprocessing._store import PreprocessedStore
from nnseg.testing import make_plans_json
from nnseg.training._split import Split

INTENSITY = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
             "percentile_99_5": 2.5, "percentile_00_5": -2.5}  # fmt: skip


def make_plan(
    patch: Sequence[int] = (16, 16, 16), batch_size: int = 2, use_mask: Sequence[bool] = (False,), stages: int = 3
) -> ConfigurationPlan:
    """A minimal configuration with ``stages`` stages of stride 2 (stage 0 stride 1)."""
    name = "2d" if len(patch) == 2 else "3d_fullres"
    plans = make_plans_json(patch, name=name, features=[4] * stages, schemes=["ZScoreNormalization"] * len(use_mask),
                            use_mask=use_mask, intensity=INTENSITY, batch_size=batch_size, median_shape=[24] * len(patch))  # fmt: skip
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


def trainer_setup(folder: Path, train: Sequence[str]) -> dict[str, Any]:
    """Plan, spec, a store of five threshold cases and a split training on ``train`` and validating on case_4."""
    plan, spec = make_plan(), make_spec()
    shapes = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]
    cases = {f"case_{i}": threshold_case(shape, seed=i) for i, shape in enumerate(shapes)}
    store = write_store(folder, plan, spec, cases)
    return {"plan": plan, "spec": spec, "store": store, "split": Split(tuple(train), ("case_4",), 0)}


WORK_SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]


def write_tiny_work(workspace: Any) -> None:
    """Plans (``nnUNetPlans`` with the tiny 3d_fullres plan), dataset.json and a store of five threshold cases."""
    from nnseg.preprocessing import store_name

    plan, spec = make_plan(), make_spec()
    plans = Plans.from_json({
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [24, 24, 24],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": plan.to_json()}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    })  # fmt: skip
    plans.save(workspace.plans_path("nnUNetPlans"))
    spec.save(workspace.dataset_json_path)
    cases = {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(WORK_SHAPES)}
    write_store(workspace.preprocessed_dir(store_name(plans["3d_fullres"], spec)), plans["3d_fullres"], spec, cases)
