"""A preprocessed label map (or prediction) mapped back lands on the source image's grid."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.dataset import DatasetSpec, RawDataset
from nnseg.errors import ConfigError, StoreError
from nnseg.io import ImageGeometry, read_segmentation, write_segmentation
from nnseg.planning import Plans
from nnseg.preprocessing._case import CaseProperties
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._resampling import Resampler
from nnseg.preprocessing._revert import (
    logits_to_segmentation,
    resample_to_cropped_shape,
    revert_probabilities,
    revert_segmentation,
    uncrop_and_transpose_back,
)
from nnseg.testing import make_plans_json, make_synthetic_dataset

SPEC = DatasetSpec(
    channel_names=("T1",), labels={"background": 0, "a": 1, "b": 2}, num_training=1, file_ending=".nii.gz"
)


def make_preprocessor(
    spacing: Sequence[float], transpose: Sequence[int] = (0, 1, 2), name: str = "3d_fullres", spec: DatasetSpec = SPEC
) -> Preprocessor:
    """Return a z-score (masked) preprocessor for a one-configuration plan with the given target spacing."""
    intensity = {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0}
    plans = make_plans_json([8] * len(spacing), name=name, spacing=spacing, intensity=intensity, use_mask=(True,),
                            transpose=transpose, data_identifier=name)  # fmt: skip
    return Preprocessor(Plans.from_json(plans)[name], spec)


def boxed_case(shape: Sequence[int], box: Sequence[tuple[int, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return an image that is nonzero exactly inside ``box`` and random labels 0..2 inside it."""
    rng = np.random.default_rng(seed)
    inside: tuple[int | slice, ...] = (0, *(slice(lo, hi) for lo, hi in box))
    image = np.zeros((1, *shape), dtype=np.float32)
    seg = np.zeros((1, *shape), dtype=np.uint8)
    inner = tuple(hi - lo for lo, hi in box)
    image[inside] = rng.uniform(1.0, 5.0, size=inner)
    seg[inside] = rng.integers(0, 3, size=inner)
    return image, seg


def ball_case(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Return a smooth image with a zero margin and two nested ellipsoids as labels 1 and 2."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) if n > 1 else np.zeros(1) for n in shape), indexing="ij"))
    radius = np.sqrt((grid**2).sum(axis=0))
    image = np.where(radius < 0.95, 2.0 + grid[0], 0.0).astype(np.float32)[None]
    seg = np.zeros((1, *shape), dtype=np.uint8)
    seg[0][radius < 0.7] = 1
    seg[0][radius < 0.45] = 2
    return image, seg


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks."""
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


@st.composite
def boxed_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...], tuple[int, ...], int]:
    shape = tuple(draw(st.integers(2, 7)) for _ in range(3))
    box = []
    for size in shape:
        lo = draw(st.integers(0, size - 1))
        box.append((lo, draw(st.integers(lo + 1, size))))
    transpose = draw(st.sampled_from(list(itertools.permutations(range(3)))))
    return shape, tuple(box), tuple(transpose), draw(st.integers(0, 1000))


@settings(max_examples=40, deadline=None)
@given(boxed_cases())
def test_label_map_maps_back_exactly_when_spacing_is_kept(draw: tuple[Any, ...]) -> None:
    shape, box, transpose, seed = draw
    image, seg = boxed_case(shape, box, seed)
    spacing = (1.5, 1.0, 0.75)
    pre = make_preprocessor([spacing[axis] for axis in transpose], transpose)
    case = pre.preprocess(image, spacing, seg=seg)
    assert case.seg is not None
    assert case.properties.bbox_used_for_cropping == tuple(box[axis] for axis in transpose)
    reverted = revert_segmentation(case.seg, case.properties)
    assert reverted.shape == seg.shape
    np.testing.assert_array_equal(reverted, seg)
    one_hot = np.stack([case.seg[0] == label for label in range(3)]).astype(np.float32)
    np.testing.assert_array_equal(logits_to_segmentation(one_hot, case.properties), seg)


@pytest.mark.parametrize(
    ("shape", "spacing", "target", "transpose"),
    [
        ((12, 30, 28), (4.0, 1.0, 1.0), (2.5, 0.8, 0.8), (0, 1, 2)),  # separate z (4 / 1 > 3), order_z 0
        ((30, 28, 12), (1.0, 1.0, 4.0), (2.5, 0.8, 0.8), (2, 0, 1)),  # the same after transposing
        ((26, 22, 24), (1.0, 1.2, 0.9), (0.7, 0.8, 1.1), (0, 1, 2)),  # joint 3-D resize
    ],
)
def test_label_map_maps_back_to_the_source_shape_after_resampling(
    shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...], transpose: tuple[int, ...]
) -> None:
    """Measured Dice (labels 1, 2): 1.0 / 1.0 for both separate-z cases, 0.989 / 1.0 for the joint resize."""
    image, seg = ball_case(shape)
    case = make_preprocessor(target, transpose).preprocess(image, spacing, seg=seg)
    assert case.seg is not None
    assert case.shape != case.properties.shape_after_cropping_and_before_resampling
    reverted = revert_segmentation(case.seg, case.properties)
    assert reverted.shape == seg.shape
    for label in (1, 2):
        assert dice(reverted == label, seg == label) > 0.95, label
    one_hot = np.stack([np.maximum(case.seg[0], 0) == label for label in range(3)]).astype(np.float32)
    predicted = logits_to_segmentation(one_hot, case.properties)
    assert predicted.shape == seg.shape
    assert predicted.dtype == np.uint8
    for label in (1, 2):
        assert dice(predicted == label, seg == label) > 0.95, label


def test_2d_case_maps_back_without_touching_the_slice_axis() -> None:
    image, seg = ball_case((1, 40, 36))
    case = make_preprocessor((0.6, 1.4), name="2d").preprocess(image, (999.0, 1.0, 1.0), seg=seg)
    assert case.seg is not None
    assert case.properties.target_spacing == (999.0, 0.6, 1.4)
    reverted = revert_segmentation(case.seg, case.properties)
    assert reverted.shape == (1, 1, 40, 36)
    assert seg.any()
    assert dice(reverted > 0, seg > 0) > 0.95


def test_reverting_works_from_json_round_tripped_properties() -> None:
    image, seg = ball_case((10, 16, 14))
    geometry = ImageGeometry(itk_spacing=(0.8, 0.9, 3.0), itk_origin=(1.0, 2.0, 3.0),
                             itk_direction=(1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # fmt: skip
    pre = make_preprocessor((3.0, 0.7, 0.7), (0, 2, 1))
    case = pre.preprocess(image, geometry.spacing, seg=seg, geometry=geometry)
    assert case.seg is not None
    restored = CaseProperties.from_json(json.loads(json.dumps(case.properties.to_json())))
    assert restored == case.properties
    assert restored.geometry == geometry
    np.testing.assert_array_equal(
        revert_segmentation(case.seg, restored), revert_segmentation(case.seg, case.properties)
    )


def test_probabilities_are_background_outside_the_crop_and_still_sum_to_one() -> None:
    image, seg = boxed_case((6, 9, 8), ((1, 5), (2, 8), (0, 6)), seed=3)
    case = make_preprocessor((0.5, 1.0, 1.0)).preprocess(image, (1.0, 1.0, 1.0), seg=seg)
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(3, *case.shape)).astype(np.float32)
    probabilities = revert_probabilities(scores / scores.sum(axis=0), case.properties)
    assert probabilities.shape == (3, 6, 9, 8)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert (probabilities[:, 0] == np.array([1, 0, 0])[:, None, None]).all()
    assert (probabilities[0, :, :2] == 1).all()


def test_uncrop_fills_per_channel_and_undoes_the_transpose() -> None:
    props = CaseProperties(spacing=(1, 1, 1), transpose_forward=(1, 2, 0), shape_before_cropping=(4, 5, 3),
                           bbox_used_for_cropping=((1, 3), (0, 5), (2, 3)),
                           shape_after_cropping_and_before_resampling=(2, 5, 1), shape_after_resampling=(2, 5, 1),
                           target_spacing=(1, 1, 1))  # fmt: skip
    cropped = np.arange(20, dtype=np.int16).reshape(2, 2, 5, 1)
    full = uncrop_and_transpose_back(cropped, props, fill=np.array([-5, 7]))
    assert full.shape == (2, 3, 4, 5)  # source order: transposed (4, 5, 3) with backward (2, 0, 1)
    transposed = full.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(transposed[:, 1:3, :, 2:3], cropped)
    assert (transposed[0, 0] == -5).all()
    assert (transposed[1, 0] == 7).all()


def test_wrong_grid_and_non_label_resampler_are_rejected() -> None:
    image, seg = boxed_case((6, 6, 6), ((1, 5), (1, 5), (1, 5)), seed=0)
    case = make_preprocessor((1.0, 1.0, 1.0)).preprocess(image, (1.0, 1.0, 1.0), seg=seg)
    assert case.seg is not None
    with pytest.raises(ConfigError, match=r"spatial shape \(4, 4, 4\); got shape \(1, 6, 6, 6\)"):
        revert_segmentation(seg, case.properties)
    with pytest.raises(ConfigError, match="is_seg=True"):
        revert_segmentation(case.seg, case.properties, resampler=Resampler(is_seg=False, order=1))
    with pytest.raises(ConfigError, match="uncrop_and_transpose_back: expected a channel-first array"):
        uncrop_and_transpose_back(np.zeros((4, 4, 4)), case.properties)
    with pytest.raises(ConfigError, match="resample_to_cropped_shape"):
        resample_to_cropped_shape(np.zeros((2, 3, 3, 3)), case.properties)


@pytest.mark.parametrize("two_d", [False, True])
def test_reverted_label_written_with_the_stored_geometry_reproduces_the_label_file(two_d: bool, tmp_path: Path) -> None:
    shape = (1, 24, 20) if two_d else (10, 16, 14)
    root = make_synthetic_dataset(tmp_path / "raw", num_cases=1, modality="mr", shape=shape, two_d=two_d, seed=2)
    dataset = RawDataset.from_folder(root)
    case = dataset.cases[0]
    assert case.label_path is not None
    labels, geometry = read_segmentation(case.label_path)
    spacing = geometry.spacing
    pre = make_preprocessor(spacing[1:] if two_d else spacing, name="2d" if two_d else "3d_fullres", spec=dataset.spec)
    result = pre.preprocess_case(case)
    assert result.seg is not None
    assert result.properties.geometry == geometry
    write_segmentation(revert_segmentation(result.seg, result.properties), tmp_path / "back.nii.gz", geometry)
    back, back_geometry = read_segmentation(tmp_path / "back.nii.gz")
    assert back_geometry == geometry
    np.testing.assert_array_equal(back, labels)


def test_inconsistent_properties_are_rejected_before_they_can_map_anything_back() -> None:
    good: dict[str, Any] = {"spacing": [1, 1, 1], "transpose_forward": [0, 1, 2], "shape_before_cropping": [4, 5, 6],
            "bbox_used_for_cropping": [[0, 4], [1, 5], [2, 6]], "shape_after_cropping_and_before_resampling": [4, 4, 4],
            "shape_after_resampling": [8, 8, 8], "target_spacing": [0.5, 0.5, 0.5]}  # fmt: skip
    assert CaseProperties.from_json(good).shape_after_resampling == (8, 8, 8)
    with pytest.raises(ConfigError, match=r"bbox_used_for_cropping \[\[0, 4\], \[1, 5\], \[2, 7\]\] does not cut"):
        CaseProperties(**{**good, "bbox_used_for_cropping": [[0, 4], [1, 5], [2, 7]]})
    with pytest.raises(ConfigError, match=r"transpose_forward \[0, 0, 2\] is not a permutation"):
        CaseProperties(**{**good, "transpose_forward": [0, 0, 2]})
    with pytest.raises(StoreError, match=r"case.json: malformed case properties.*different numbers of axes \[2, 3\]"):
        CaseProperties.from_json({**good, "target_spacing": [1, 1]}, where="case.json")
