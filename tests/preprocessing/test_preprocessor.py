"""``Preprocessor`` on in-memory arrays and on files: order of steps, properties, outputs, errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnseg.dataset import Case, DatasetSpec
from nnseg.errors import DatasetError, PlansError, StoreError
from nnseg.io import ImageGeometry, write_image, write_segmentation
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing._case import CaseProperties
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.testing import make_plans_json

INTENSITY = {"mean": 100.0, "median": 100.0, "std": 50.0, "min": 0.0, "max": 300.0,
             "percentile_99_5": 250.0, "percentile_00_5": 10.0}  # fmt: skip


def plans_dict(
    spacing: Sequence[float],
    schemes: Sequence[str] = ("ZScoreNormalization",),
    use_mask: Sequence[bool] = (False,),
    transpose_forward: Sequence[int] = (0, 1, 2),
    name: str = "3d_fullres",
) -> dict[str, Any]:
    """Return a minimal nnU-Net v2 plans dict with one configuration."""
    return make_plans_json([16] * len(spacing), name=name, spacing=spacing, features=(8, 16), schemes=schemes,
                           use_mask=use_mask, intensity=INTENSITY, transpose=transpose_forward)  # fmt: skip


def make_plan(spacing: Sequence[float], **kwargs: Any) -> ConfigurationPlan:
    """Return the one configuration of :func:`plans_dict`."""
    name = kwargs.get("name", "3d_fullres")
    return Plans.from_json(plans_dict(spacing, **kwargs))[name]


def make_spec(num_channels: int = 1, labels: dict[str, Any] | None = None) -> DatasetSpec:
    """Return a dataset spec with MR-like channel names."""
    return DatasetSpec(
        channel_names=tuple(f"T{c}" for c in range(num_channels)),
        labels=labels or {"background": 0, "organ": 1, "lesion": 2}, num_training=1, file_ending=".nii.gz",
    )  # fmt: skip


def mr_case(shape: tuple[int, int, int] = (10, 12, 14)) -> tuple[np.ndarray, np.ndarray]:
    """Return an image with a zero border (to be cropped) and a label map inside it."""
    rng = np.random.default_rng(0)
    image = np.zeros((1, *shape), dtype=np.float32)
    image[0, 2:-2, 3:-1, 1:-3] = rng.uniform(50, 150, size=(shape[0] - 4, shape[1] - 4, shape[2] - 4))
    seg = np.zeros((1, *shape), dtype=np.uint8)
    seg[0, 4:7, 5:9, 4:8] = 1
    seg[0, 5, 6, 5] = 2
    return image, seg


def test_preprocess_crops_normalises_resamples_and_samples_locations() -> None:
    image, seg = mr_case()
    pre = Preprocessor(make_plan((0.5, 1.0, 1.0), use_mask=(True,)), make_spec())
    case = pre.preprocess(image, (1.0, 1.0, 1.0), seg=seg, case_id="c1")
    props = case.properties
    assert props.bbox_used_for_cropping == ((2, 8), (3, 11), (1, 11))
    assert props.shape_before_cropping == (10, 12, 14)
    assert props.shape_after_cropping_and_before_resampling == (6, 8, 10)
    assert props.shape_after_resampling == (12, 8, 10) == case.shape
    assert props.target_spacing == (0.5, 1.0, 1.0)
    assert case.data.dtype == np.float32
    assert case.data.flags.c_contiguous
    assert case.seg is not None
    assert case.seg.dtype == np.int8
    assert case.seg.shape == (1, 12, 8, 10)
    assert set(np.unique(case.seg)) <= {-1, 0, 1, 2}
    assert case.class_locations is not None
    assert set(case.class_locations) == {"1", "2"}
    rows = case.class_locations["1"]
    assert (case.seg[tuple(rows.T)] == 1).all()


def test_masked_zscore_happens_before_resampling_on_the_cropped_grid() -> None:
    image, seg = mr_case()
    case = Preprocessor(make_plan((1.0, 1.0, 1.0), use_mask=(True,)), make_spec()).preprocess(image, (1, 1, 1), seg=seg)
    inside = image[0, 2:8, 3:11, 1:11]
    expected = (inside - inside.mean()) / inside.std()
    np.testing.assert_allclose(case.data[0], expected, rtol=1e-5, atol=1e-5)


def test_transpose_is_applied_first_and_spacing_is_kept_untransposed() -> None:
    image, seg = mr_case((6, 8, 10))
    pre = Preprocessor(make_plan((2.0, 1.0, 1.0), transpose_forward=(2, 0, 1)), make_spec())
    case = pre.preprocess(image, (1.0, 1.0, 2.0), seg=seg)
    assert case.properties.spacing == (1.0, 1.0, 2.0)
    assert case.properties.transpose_forward == (2, 0, 1)
    assert case.properties.transpose_backward == (1, 2, 0)
    assert case.properties.shape_before_cropping == (10, 6, 8)
    assert case.properties.shape_after_resampling == case.properties.shape_after_cropping_and_before_resampling


def test_2d_configuration_keeps_the_slice_spacing() -> None:
    image = np.random.default_rng(1).uniform(1, 2, size=(1, 1, 20, 16)).astype(np.float32)
    pre = Preprocessor(make_plan((0.5, 2.0), name="2d"), make_spec())
    case = pre.preprocess(image, (999.0, 1.0, 1.0))
    assert case.properties.target_spacing == (999.0, 0.5, 2.0)
    assert case.shape == (1, 40, 8)
    assert case.seg is None
    assert case.class_locations is None


def test_seg_is_int16_when_a_label_exceeds_127() -> None:
    labels = {"background": 0, **{f"l{i}": i for i in range(1, 201)}}
    seg = np.zeros((1, 4, 4, 4), dtype=np.uint8)
    seg[0, 1, 1, 1] = 200
    case = Preprocessor(make_plan((1.0, 1.0, 1.0)), make_spec(labels=labels)).preprocess(
        np.ones((1, 4, 4, 4), dtype=np.float32), (1, 1, 1), seg=seg
    )
    assert case.seg is not None
    assert case.seg.dtype == np.int16
    assert case.seg.max() == 200


def test_plan_and_spec_channel_mismatch_is_a_plans_error() -> None:
    with pytest.raises(PlansError, match=r"1 normalization_schemes but the dataset has 2 channels"):
        Preprocessor(make_plan((1.0, 1.0, 1.0)), make_spec(num_channels=2))


def test_unknown_normalisation_in_plan_is_a_plans_error() -> None:
    with pytest.raises(PlansError, match=r"unknown normalisation scheme 'ZScoreNormalisation'"):
        Preprocessor(make_plan((1.0, 1.0, 1.0), schemes=("ZScoreNormalisation",)), make_spec())


@pytest.mark.parametrize(
    ("images", "spacing", "seg", "message"),
    [
        (np.ones((2, 4, 4, 4)), (1, 1, 1), None, r"case 'c7': got 2 image channel\(s\) but the plan expects 1"),
        (np.ones((4, 4, 4)), (1, 1, 1), None, r"case 'c7': images must be \(c, z, y, x\)"),
        (np.ones((1, 4, 4, 4)), (1, 0, 1), None, r"case 'c7': spacing must be 3 positive numbers"),
        (np.ones((1, 4, 4, 4)), (1, 1, 1), np.zeros((1, 4, 4, 5)), r"case 'c7': label map shape \(1, 4, 4, 5\)"),
        (np.ones((1, 4, 4, 4)), (1, 1, 1), np.full((1, 4, 4, 4), -2), r"case 'c7': .*negative value -2"),
        (np.ones((1, 4, 4, 4)), (1, 1, 1), np.full((1, 4, 4, 4), 0.5), r"case 'c7': .*non-integer values"),
    ],
)
def test_bad_inputs_name_the_case(images: np.ndarray, spacing: tuple, seg: np.ndarray | None, message: str) -> None:
    pre = Preprocessor(make_plan((1.0, 1.0, 1.0)), make_spec())
    with pytest.raises(DatasetError, match=message):
        pre.preprocess(images, spacing, seg=seg, case_id="c7")


def test_rgb_range_error_names_case_and_channel() -> None:
    pre = Preprocessor(make_plan((1.0, 1.0, 1.0), schemes=("RGBTo01Normalization",)), make_spec())
    with pytest.raises(DatasetError, match=r"case 'c3', channel 0: RGB normalisation"):
        pre.preprocess(np.full((1, 2, 2, 2), 300.0), (1, 1, 1), case_id="c3")


def test_preprocess_case_reads_files_and_keeps_their_geometry(tmp_path: Path) -> None:
    image, seg = mr_case()
    geometry = ImageGeometry(itk_spacing=(1.0, 1.0, 2.0), itk_origin=(3.0, 4.0, 5.0),
                             itk_direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # fmt: skip
    write_image(image[0], tmp_path / "c_0000.nii.gz", geometry)
    write_segmentation(seg, tmp_path / "c.nii.gz", geometry)
    case = Case("c", (tmp_path / "c_0000.nii.gz",), tmp_path / "c.nii.gz")
    pre = Preprocessor(make_plan((2.0, 1.0, 1.0)), make_spec())
    from_files = pre.preprocess_case(case)
    in_memory = pre.preprocess(image, (2.0, 1.0, 1.0), seg=seg)
    assert from_files.case_id == "c"
    assert from_files.properties.geometry == geometry
    assert from_files.properties.spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(from_files.data, in_memory.data)
    np.testing.assert_array_equal(from_files.seg, in_memory.seg)


def test_preprocess_case_checks_the_number_of_channel_files(tmp_path: Path) -> None:
    case = Case("c9", (tmp_path / "c9_0000.nii.gz", tmp_path / "c9_0001.nii.gz"))
    with pytest.raises(DatasetError, match=r"case 'c9': 2 image file\(s\) but the plan expects 1 channel"):
        Preprocessor(make_plan((1.0, 1.0, 1.0)), make_spec()).preprocess_case(case)


def test_case_properties_round_trip_through_json(tmp_path: Path) -> None:
    image, seg = mr_case()
    props = (
        Preprocessor(make_plan((0.7, 1.0, 1.3)), make_spec())
        .preprocess(image, (1, 1, 1), seg=seg, geometry=ImageGeometry.identity((1, 1, 1)))
        .properties
    )
    props.save(tmp_path / "props.json")
    assert CaseProperties.load(tmp_path / "props.json") == props
    assert CaseProperties.from_json(props.to_json()) == props
    broken = {k: v for k, v in props.to_json().items() if k != "bbox_used_for_cropping"}
    with pytest.raises(StoreError, match=r"missing key\(s\) \['bbox_used_for_cropping'\]"):
        CaseProperties.from_json(broken)
