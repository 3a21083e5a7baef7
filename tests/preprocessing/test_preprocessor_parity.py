"""Parity with nnU-Net v2.8.1's ``DefaultPreprocessor.run_case`` on small synthetic datasets.

Both sides read the same files and the same plans dict. Compared per case: data (max abs diff <=
``DATA_TOLERANCE``; measured 0.0), the label map (exactly), the properties (bbox and shapes) and the sampled
class locations (exactly: same keys, same voxels in the same order). Further tests compare the single steps
(cropping, every normalisation scheme, resampling with forced / automatic separate z and order_z 0 / 1) and
the way back (logits to a label map on the source grid, nnU-Net's export) on random arrays.
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
from nnseg.preprocessing._case import CaseProperties, location_key
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._resampling import separate_z_axis
from nnseg.testing import make_plans_json, make_synthetic_dataset

pytestmark = pytest.mark.parity

DATA_TOLERANCE = 1e-4
"""Largest allowed absolute difference of the preprocessed image. Measured: 0.0 in every scenario below (the
arrays are bit-identical; 2-core CPU VM, Python 3.11, numpy/scipy/scikit-image as pinned in the venv)."""

CT_STATS = {"mean": -200.0, "median": -100.0, "std": 350.0, "min": -1100.0, "max": 300.0,
            "percentile_99_5": 220.0, "percentile_00_5": -1000.0}  # fmt: skip


def plans_dict(
    name: str, spacing: Sequence[float], schemes: Sequence[str], use_mask: Sequence[bool], transpose: Sequence[int]
) -> dict[str, Any]:
    """Return an nnU-Net v2 plans dict with one configuration (network keys are placeholders)."""
    return make_plans_json([16] * len(spacing), name=name, spacing=spacing, schemes=schemes, use_mask=use_mask,
                           intensity=CT_STATS, transpose=transpose)  # fmt: skip


@pytest.fixture
def nnunet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Import nnunetv2 (skip without it) with its folders pointing into tmp_path."""
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    pytest.importorskip("nnunetv2")
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return DefaultPreprocessor, PlansManager


def _edit_dataset(
    root: Path, labels: dict[str, Any], regions_class_order: list[int] | None, ignore: int | None
) -> None:
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


def _compare_case(
    nnunet: Any, pre: Preprocessor, plans: dict[str, Any], name: str, root: Path, case: Any
) -> CaseProperties:
    default_preprocessor, plans_manager_class = nnunet
    manager = plans_manager_class(plans)
    dataset_json = json.loads((root / "dataset.json").read_text())
    seg_file = None if case.label_path is None else str(case.label_path)
    ref_data, ref_seg, ref_props = default_preprocessor(verbose=False).run_case(
        [str(p) for p in case.image_paths], seg_file, manager, manager.get_configuration(name), dataset_json
    )
    ours = pre.preprocess_case(case)
    assert ours.data.shape == ref_data.shape
    assert float(np.max(np.abs(ours.data - ref_data))) <= DATA_TOLERANCE
    props = ours.properties
    assert props.bbox_used_for_cropping == tuple(
        tuple(int(v) for v in pair) for pair in ref_props["bbox_used_for_cropping"]
    )
    assert props.shape_before_cropping == tuple(ref_props["shape_before_cropping"])
    assert props.shape_after_cropping_and_before_resampling == tuple(
        ref_props["shape_after_cropping_and_before_resampling"]
    )
    assert props.shape_after_resampling == tuple(ref_data.shape[1:])
    np.testing.assert_allclose(props.spacing, ref_props["spacing"])
    if seg_file is None:
        assert ours.seg is None
        assert ours.class_locations is None
        return props
    assert ours.seg is not None
    assert ours.seg.dtype == ref_seg.dtype
    np.testing.assert_array_equal(ours.seg, ref_seg)
    expected = {
        location_key(tuple(k) if isinstance(k, list) else k): np.asarray(v)
        for k, v in ref_props["class_locations"].items()
    }
    assert ours.class_locations is not None
    assert set(ours.class_locations) == set(expected)
    for key, rows in expected.items():
        assert len(ours.class_locations[key]) == len(rows), key
        if len(rows):
            np.testing.assert_array_equal(ours.class_locations[key], rows)
    return props


SCENARIOS: dict[str, tuple[Any, ...]] = {
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
    properties = [_compare_case(nnunet, pre, plans, name, root, case) for case in (*dataset.cases, *dataset.test_cases)]
    if "crop" in scenario:  # the scenario is only meaningful if some case really is cropped
        assert any(p.shape_after_cropping_and_before_resampling != p.shape_before_cropping for p in properties)
    if "anisotropic" in scenario:  # ... or really takes the separate-z path
        for p in properties:
            original = [p.spacing[axis] for axis in p.transpose_forward]
            assert separate_z_axis(original, p.target_spacing) == 0
            assert p.shape_after_resampling != p.shape_after_cropping_and_before_resampling


def test_location_sampling_matches_nnunet_on_a_large_map(nnunet: Any) -> None:
    from nnseg.preprocessing._locations import sample_class_locations

    seg = np.random.default_rng(5).choice(np.array([-1, 0, 1, 2, 3], dtype=np.int8), size=(1, 40, 60, 60),
                                          p=[0.1, 0.4, 0.3, 0.15, 0.05])  # fmt: skip
    classes: list[int | tuple[int, ...]] = [1, 2, 3, (3, 1), (-1, 0, 1, 2)]
    expected = nnunet[0]._sample_foreground_locations(seg, classes)
    ours = sample_class_locations(seg, classes)
    for cls in classes:
        np.testing.assert_array_equal(ours[location_key(cls)], expected[cls])


def test_cropping_matches_nnunet_with_holes_and_several_channels(nnunet: Any) -> None:
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero as reference_crop

    from nnseg._cropping import crop_to_nonzero

    rng = np.random.default_rng(2)
    data = np.zeros((2, 12, 14, 10), dtype=np.float32)
    data[0, 2:9, 3:12, 1:8] = rng.uniform(1, 2, size=(7, 9, 7))
    data[0, 4:6, 6:8, 3:5] = 0  # a hole: filled, so background there stays 0 rather than -1
    data[1, 9, 5, 8] = 3.0  # a lone voxel of the second channel widens the box
    seg = (rng.uniform(size=(1, 12, 14, 10)) > 0.7).astype(np.int16)
    flat = data[:, 4:5]  # a 2-D image (c, 1, y, x): its hole touches the border along axis 0 and stays open
    for image, label in ((data, seg), (data, None), (flat, seg[:, 4:5]), (flat, None)):
        ours = crop_to_nonzero(image, label)
        expected = reference_crop(image.copy(), None if label is None else label.copy())
        np.testing.assert_array_equal(ours[0], expected[0])
        np.testing.assert_array_equal(ours[1], expected[1])
        assert ours[1].dtype == expected[1].dtype
        assert ours[2] == tuple(tuple(int(v) for v in pair) for pair in expected[2])


@pytest.mark.parametrize(
    ("scheme", "use_mask"),
    [("CTNormalization", False), ("ZScoreNormalization", False), ("ZScoreNormalization", True),
     ("RescaleTo01Normalization", False), ("RGBTo01Normalization", False), ("NoNormalization", False)],
)  # fmt: skip
def test_every_normalisation_scheme_matches_nnunet(scheme: str, use_mask: bool, nnunet: Any) -> None:
    from nnunetv2.preprocessing.normalization import default_normalization_schemes as schemes

    from nnseg.preprocessing._normalization import build_normalizer

    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, size=(6, 9, 8)).astype(np.float32)
    seg = np.where(rng.uniform(size=image.shape) > 0.3, 0, -1).astype(np.int8)
    reference = getattr(schemes, scheme)(use_mask_for_norm=use_mask, intensityproperties=CT_STATS).run(
        image.copy(), seg
    )
    ours = build_normalizer(scheme, use_mask_for_norm=use_mask, intensity_properties=CT_STATS)(image.copy(), seg)
    assert ours.dtype == reference.dtype == np.float32
    np.testing.assert_array_equal(ours, reference)


RESAMPLING_CASES = [
    # (shape, new_shape, current spacing, new spacing, force_separate_z, order_z)
    ((6, 10, 9), (9, 13, 7), (1.0, 1.0, 1.0), (0.7, 0.8, 1.3), None, 0),  # joint 3-D
    ((5, 10, 9), (9, 12, 11), (4.0, 1.0, 1.0), (2.2, 0.8, 0.8), None, 0),  # separate z along axis 0
    ((10, 5, 9), (12, 9, 11), (1.0, 4.0, 1.0), (0.8, 2.2, 0.8), None, 1),  # axis 1, order_z 1
    ((10, 9, 4), (8, 7, 4), (0.9, 0.9, 5.0), (1.1, 1.2, 5.0), None, 0),  # separate axis keeps its size
    ((6, 10, 9), (9, 12, 11), (1.0, 1.0, 1.0), (0.5, 0.8, 4.0), None, 0),  # anisotropic target decides
    ((6, 10, 9), (9, 12, 11), (1.0, 1.0, 1.0), (0.7, 0.8, 0.8), True, 0),  # forced separate z
    ((5, 10, 9), (9, 12, 11), (4.0, 1.0, 1.0), (2.2, 0.8, 0.8), False, 0),  # forced joint
    ((6, 10, 9), (9, 12, 11), (1.0, 3.5, 3.5), (0.8, 0.8, 0.8), None, 0),  # two axes tie: joint
]


@pytest.mark.parametrize("case", RESAMPLING_CASES)
def test_resampling_matches_nnunet(case: tuple[Any, ...], nnunet: Any) -> None:
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    from nnseg.preprocessing._resampling import resample_data, resample_seg

    shape, new_shape, current, new, force, order_z = case
    rng = np.random.default_rng(7)
    data = rng.normal(size=(2, *shape)).astype(np.float32)
    seg = rng.integers(-1, 3, size=(1, *shape)).astype(np.int8)
    for array, ours_fn, is_seg, order in ((data, resample_data, False, 3), (seg, resample_seg, True, 1)):
        reference = resample_data_or_seg_to_shape(array.copy(), new_shape, current, new, is_seg=is_seg, order=order,
                                                  order_z=order_z, force_separate_z=force)  # fmt: skip
        ours = ours_fn(array, new_shape, current, new, order, order_z, force)
        assert ours.dtype == reference.dtype
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("scenario", ["anisotropic_transposed", "two_d", "mr_crop_two_channels"])
def test_logits_map_back_like_nnunet_export(scenario: str, nnunet: Any, tmp_path: Path) -> None:
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    from nnseg.preprocessing._revert import logits_to_segmentation

    kwargs, name, spacing, schemes, use_mask, transpose, _ = SCENARIOS[scenario]
    root = make_synthetic_dataset(tmp_path / "raw", num_cases=1, seed=5, **{"shape": (16, 20, 20), **kwargs})
    dataset = RawDataset.from_folder(root)
    plans = plans_dict(name, spacing[-2:] if name == "2d" else spacing, schemes, use_mask, transpose)
    case = Preprocessor(Plans.from_json(plans)[name], dataset.spec).preprocess_case(dataset.cases[0])
    logits = np.random.default_rng(1).normal(size=(3, *case.shape)).astype(np.float32)
    manager = nnunet[1](plans)
    props = case.properties.to_json()
    reference = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits.copy(), manager, manager.get_configuration(name),
        manager.get_label_manager(json.loads((root / "dataset.json").read_text())), props,
    )  # fmt: skip
    ours = logits_to_segmentation(logits, case.properties)
    assert ours.shape == (1, *reference.shape)
    assert ours.dtype == reference.dtype
    np.testing.assert_array_equal(ours[0], reference)
