"""Parity with nnU-Net v2.8.1's ``DefaultPreprocessor.run_case`` on small synthetic datasets.

Both sides read the same files and the same plans dict. Compared per case: data (allclose 1e-5), the
label map (exactly), the properties (bbox and shapes) and the sampled class locations (exactly: same keys,
same voxels in the same order).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnseg.dataset import RawDataset
from nnseg.io import read_segmentation, write_segmentation
from nnseg.planning import Plans
from nnseg.preprocessing._case import location_key
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.testing import make_synthetic_dataset

pytestmark = pytest.mark.parity

RESAMPLING = {"resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
              "resampling_fn_seg": "resample_data_or_seg_to_shape",
              "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
              "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                     "force_separate_z": None}}  # fmt: skip
CT_STATS = {"mean": -200.0, "median": -100.0, "std": 350.0, "min": -1100.0, "max": 300.0,
            "percentile_99_5": 220.0, "percentile_00_5": -1000.0}  # fmt: skip


def plans_dict(
    name: str, spacing: Sequence[float], schemes: Sequence[str], use_mask: Sequence[bool], transpose: Sequence[int]
) -> dict[str, Any]:
    """Return an nnU-Net v2 plans dict with one configuration (network keys are placeholders)."""
    ndim = len(spacing)
    conv = f"torch.nn.modules.conv.Conv{ndim}d"
    configuration = {
        "data_identifier": f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [16] * ndim, "median_image_size_in_voxels": [16.0] * ndim, "spacing": list(spacing),
        "normalization_schemes": list(schemes), "use_mask_for_norm": list(use_mask), **RESAMPLING,
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": 1, "features_per_stage": [8], "conv_op": conv,
                                         "kernel_sizes": [[3] * ndim], "strides": [[1] * ndim],
                                         "n_conv_per_stage": [1], "n_conv_per_stage_decoder": [],
                                         "conv_bias": True, "norm_op": None, "norm_op_kwargs": None,
                                         "dropout_op": None, "dropout_op_kwargs": None,
                                         "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": True,
    }  # fmt: skip
    return {
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [16, 16, 16],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": list(transpose),
        "transpose_backward": [int(i) for i in np.argsort(transpose)], "configurations": {name: configuration},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {str(c): dict(CT_STATS) for c in range(len(schemes))},
    }  # fmt: skip


@pytest.fixture
def nnunet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Import nnunetv2 (skip without it) with its folders pointing into tmp_path."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    pytest.importorskip("nnunetv2")
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return DefaultPreprocessor, PlansManager


def _edit_dataset(root: Path, labels: dict[str, Any], regions_class_order: list[int] | None, ignore: int | None) -> None:
    """Rewrite dataset.json labels; with ``ignore``, paint a slab of every label map with it."""
    path = root / "dataset.json"
    data = json.loads(path.read_text())
    data["labels"] = labels
    if regions_class_order is not None:
        data["regions_class_order"] = regions_class_order
    path.write_text(json.dumps(data))
    if ignore is not None:
        for label_file in sorted((root / "labelsTr").iterdir()):
            seg, geometry = read_segmentation(label_file)
            seg[0, :, :3] = ignore
            write_segmentation(seg, label_file, geometry)


def _compare_case(nnunet: Any, pre: Preprocessor, plans: dict[str, Any], name: str, root: Path, case: Any) -> None:
    default_preprocessor, plans_manager_class = nnunet
    manager = plans_manager_class(plans)
    dataset_json = json.loads((root / "dataset.json").read_text())
    seg_file = None if case.label_path is None else str(case.label_path)
    ref_data, ref_seg, ref_props = default_preprocessor(verbose=False).run_case(
        [str(p) for p in case.image_paths], seg_file, manager, manager.get_configuration(name), dataset_json
    )
    ours = pre.preprocess_case(case)
    np.testing.assert_allclose(ours.data, ref_data, rtol=1e-5, atol=1e-5)
    props = ours.properties
    assert props.bbox_used_for_cropping == tuple(tuple(int(v) for v in pair) for pair in ref_props["bbox_used_for_cropping"])
    assert props.shape_before_cropping == tuple(ref_props["shape_before_cropping"])
    assert props.shape_after_cropping_and_before_resampling == tuple(ref_props["shape_after_cropping_and_before_resampling"])
    assert props.shape_after_resampling == tuple(ref_data.shape[1:])
    np.testing.assert_allclose(props.spacing, ref_props["spacing"])
    if seg_file is None:
        assert ours.seg is None
        assert ours.class_locations is None
        return
    assert ours.seg is not None
    assert ours.seg.dtype == ref_seg.dtype
    np.testing.assert_array_equal(ours.seg, ref_seg)
    expected = {location_key(tuple(k) if isinstance(k, list) else k): np.asarray(v) for k, v in ref_props["class_locations"].items()}
    assert ours.class_locations is not None
    assert set(ours.class_locations) == set(expected)
    for key, rows in expected.items():
        assert len(ours.class_locations[key]) == len(rows), key
        if len(rows):
            np.testing.assert_array_equal(ours.class_locations[key], rows)


SCENARIOS = {
    # name: (make_synthetic_dataset kwargs, configuration, target spacing, schemes, use_mask, transpose, dataset edit)
    "ct_isotropic": (dict(modality="ct"), "3d_fullres", (1.3, 0.9, 1.1), ("CTNormalization",), (False,), (0, 1, 2), None),
    "mr_crop_two_channels": (dict(modality="mr", num_channels=2, num_test_cases=1), "3d_fullres", (1.2, 1.2, 0.8),
                             ("ZScoreNormalization", "ZScoreNormalization"), (True, True), (0, 1, 2), None),
    "anisotropic": (dict(modality="mr", spacing=(5.0, 0.8, 0.8), shape=(8, 24, 24)), "3d_fullres", (4.0, 0.7, 0.9),
                    ("ZScoreNormalization",), (True,), (0, 1, 2), None),
    "anisotropic_transposed": (dict(modality="mr", spacing=(0.8, 0.8, 5.0), shape=(24, 24, 8)), "3d_fullres",
                               (4.0, 0.7, 0.9), ("ZScoreNormalization",), (False,), (2, 0, 1), None),
    "two_d": (dict(modality="ct", two_d=True, shape=(1, 40, 36)), "2d", (0.7, 1.3), ("CTNormalization",), (False,),
              (0, 1, 2), None),
    "ignore_label": (dict(modality="mr"), "3d_fullres", (1.1, 0.9, 1.0), ("RescaleTo01Normalization",), (False,), (0, 1, 2),
                     ({"background": 0, "organ": 1, "lesion": 2, "ignore": 3}, None, 3)),
    "regions": (dict(modality="mr", num_classes=3), "3d_fullres", (0.9, 1.1, 1.0), ("NoNormalization",), (False,),
                (0, 1, 2), ({"background": 0, "whole": [1, 2], "lesion": 2}, [1, 2], None)),
}  # fmt: skip


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_preprocessing_matches_nnunet(scenario: str, nnunet: Any, tmp_path: Path) -> None:
    kwargs, name, spacing, schemes, use_mask, transpose, edit = SCENARIOS[scenario]
    kwargs = {"shape": (16, 20, 20), **kwargs}
    root = make_synthetic_dataset(tmp_path / "raw", num_cases=2, seed=3, **kwargs)
    if edit is not None:
        _edit_dataset(root, *edit)
    dataset = RawDataset.from_folder(root)
    plans = plans_dict(name, spacing[-2:] if name == "2d" else spacing, schemes, use_mask, transpose)
    pre = Preprocessor(Plans.from_json(plans)[name], dataset.spec)
    for case in (*dataset.cases, *dataset.test_cases):
        _compare_case(nnunet, pre, plans, name, root, case)


def test_location_sampling_matches_nnunet_on_a_large_map(nnunet: Any) -> None:
    from nnseg.preprocessing._locations import sample_class_locations

    seg = np.random.default_rng(5).choice(np.array([-1, 0, 1, 2, 3], dtype=np.int8), size=(1, 40, 60, 60),
                                          p=[0.1, 0.4, 0.3, 0.15, 0.05])  # fmt: skip
    classes = [1, 2, 3, (3, 1), (-1, 0, 1, 2)]
    expected = nnunet[0]._sample_foreground_locations(seg, classes)
    ours = sample_class_locations(seg, classes)
    for cls in classes:
        np.testing.assert_array_equal(ours[location_key(cls)], expected[cls])
