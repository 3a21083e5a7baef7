"""Patch sampler: nnU-Net's bounds, oversampling, padding, 2-D slices, ignore label and bad input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import ConfigError, StoreError
from nnseg.training import PatchSampler
from nnseg.training._sampling import crop_and_pad, patch_bounds


class ArrayReader:
    """An in-memory stand-in for ``PreprocessedStore.read_patch``."""

    def __init__(self, data: np.ndarray, seg: np.ndarray | None) -> None:
        self.data, self.seg = data, seg

    def __call__(self, case_id: str, slices: Sequence[slice]) -> tuple[np.ndarray, np.ndarray | None]:
        index = (slice(None), *slices)
        return self.data[index], None if self.seg is None else self.seg[index]


def coordinate_case(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Data whose voxel value encodes its flat index + 1 (so 0 means padding); seg = 1 everywhere."""
    data = (np.arange(np.prod(shape), dtype=np.float32) + 1).reshape(1, *shape)
    return data, np.ones((1, *shape), dtype=np.int8)


@pytest.mark.parametrize(("batch", "forced"), [(2, 1), (12, 4), (5, 2), (1, 0)])
def test_last_third_of_the_batch_is_forced(batch: int, forced: int) -> None:
    flags = PatchSampler((8, 8, 8), batch_size=batch).forced_foreground(np.random.default_rng(0))
    assert sum(flags) == forced
    assert flags == tuple(sorted(flags))  # the forced samples are the last ones


def test_probabilistic_oversampling_fraction() -> None:
    sampler = PatchSampler((8, 8, 8), batch_size=10, probabilistic_oversampling=True)
    rng = np.random.default_rng(1)
    share = np.mean([sampler.forced_foreground(rng) for _ in range(400)])
    assert 0.29 < share < 0.37


def test_patch_bounds_follow_nnunet() -> None:
    lb, ub = patch_bounds((40, 50, 60), (30, 30, 30), (6, 5, 0))
    assert lb == (-3, -3, 0)
    assert ub == (40 + 3 - 30, 50 + 2 + 1 - 30, 60 - 30)
    # a case smaller than the patch: need_to_pad is raised to patch - shape
    lb, ub = patch_bounds((10, 50, 60), (30, 30, 30), (0, 0, 0))
    assert lb[0] == ub[0] == -10  # centred: 10 voxels of padding on each side


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 24)] * 3),
    patch=st.tuples(*[st.integers(2, 20)] * 3),
    extra=st.tuples(*[st.integers(0, 6)] * 3),
    seed=st.integers(0, 2**16),
    force=st.booleans(),
)
def test_sampler_bounds_and_content(
    shape: tuple[int, int, int], patch: tuple[int, int, int], extra: tuple[int, int, int], seed: int, force: bool
) -> None:
    initial = tuple(p + e for p, e in zip(patch, extra))
    sampler = PatchSampler(patch, initial_patch_size=initial, batch_size=1)
    data, seg = coordinate_case(shape)
    rng = np.random.default_rng(seed)
    voxels = np.argwhere(np.ones(shape, bool))[:: max(1, int(np.prod(shape)) // 7)]
    locations = {"1": np.concatenate([np.zeros((len(voxels), 1), int), voxels], axis=1)}
    result = sampler.sample(ArrayReader(data, seg), "c", shape, locations, force, rng)
    assert result.data.shape == (1, *initial)
    assert result.data.dtype == np.float32
    assert result.seg.shape == (1, *initial)
    assert result.seg.dtype == np.int16
    lb, ub = patch_bounds(shape, initial, sampler.need_to_pad)
    assert all(low >= b for low, b in zip(result.lower, lb))
    if not force:
        assert all(low <= b for low, b in zip(result.lower, ub))
    inside = result.data[0] > 0
    assert np.array_equal(inside, result.seg[0] == 1)  # padding is 0 in data and -1 in seg, exactly together
    assert set(np.unique(result.seg)) <= {-1, 1}
    assert inside.any()  # every crop overlaps the case
    # the content is the case's voxels at the right place
    first = np.argwhere(inside)[0]
    expected_index = np.ravel_multi_index(tuple(int(f + low) for f, low in zip(first, result.lower)), shape)
    assert result.data[(0, *first)] == expected_index + 1


def test_forced_sample_contains_its_class() -> None:
    shape = (30, 40, 40)
    seg = np.zeros((1, *shape), np.int8)
    seg[0, 25:27, 3:5, 35:37] = 2
    voxels = np.argwhere(seg[0] == 2)
    locations = {"1": np.zeros((0, 4), np.int64), "2": np.concatenate([np.zeros((len(voxels), 1), int), voxels], 1)}
    sampler = PatchSampler((8, 8, 8), initial_patch_size=(12, 12, 12), batch_size=1)
    reader = ArrayReader(np.zeros((1, *shape), np.float32), seg)
    for seed in range(20):
        patch = sampler.sample(reader, "c", shape, locations, True, np.random.default_rng(seed))
        centre = patch.seg[0, 2:10, 2:10, 2:10]  # the final patch after the centred spatial crop
        assert (centre == 2).any()


def test_case_without_foreground_falls_back_to_random() -> None:
    sampler = PatchSampler((8, 8, 8), batch_size=1)
    empty = {"1": np.zeros((0, 4), np.int64)}
    lower = sampler.lower_corner((20, 20, 20), empty, True, np.random.default_rng(0))
    assert all(0 <= v <= 12 for v in lower)


def test_ignore_label_centres_unforced_samples_on_annotated_voxels() -> None:
    annotated = np.array([[0, 10, 10, 10]])
    locations = {"1": np.array([[0, 2, 2, 2]]), "(-1, 0, 1)": annotated}
    sampler = PatchSampler((4, 4, 4), batch_size=1, has_ignore_label=True)
    rng = np.random.default_rng(0)
    assert sampler.lower_corner((20, 20, 20), locations, False, rng) == (8, 8, 8)
    assert sampler.lower_corner((20, 20, 20), locations, True, rng) == (0, 0, 0)  # real class wins when forced


def test_two_d_patch_draws_a_slice() -> None:
    shape = (6, 10, 10)
    data, seg = coordinate_case(shape)
    sampler = PatchSampler((8, 8), initial_patch_size=(12, 12), batch_size=1)
    seen = set()
    for seed in range(30):
        result = sampler.sample(ArrayReader(data, seg), "c", shape, None, False, np.random.default_rng(seed))
        assert result.data.shape == (1, 12, 12)
        assert result.seg.shape == (1, 12, 12)
        seen.add(result.lower[0])
    assert seen <= set(range(6))
    assert len(seen) > 2


def test_singleton_patch_axis_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"patch_size \(1, 32, 32\) has a singleton axis 0.*2-D configuration"):
        PatchSampler((1, 32, 32))


def test_initial_patch_smaller_than_patch_is_rejected() -> None:
    with pytest.raises(ConfigError, match="at least as large on every axis"):
        PatchSampler((32, 32), initial_patch_size=(30, 40))


def test_case_without_segmentation_names_the_case() -> None:
    reader = ArrayReader(np.zeros((1, 4, 4, 4), np.float32), None)
    with pytest.raises(StoreError, match="case 'img_7' has no segmentation"):
        crop_and_pad(reader, "img_7", (4, 4, 4), (0, 0, 0), (4, 4, 4))


def test_shape_mismatch_names_the_case() -> None:
    data, seg = coordinate_case((4, 4, 4))
    with pytest.raises(StoreError, match=r"case 'img_2'.*recorded shape \(8, 8, 8\) does not match"):
        crop_and_pad(ArrayReader(data, seg), "img_2", (8, 8, 8), (0, 0, 0), (8, 8, 8))


@settings(max_examples=40)
@given(
    shape=st.tuples(*[st.integers(1, 20)] * 3),
    patch=st.tuples(*[st.integers(2, 18)] * 2),
    extra=st.tuples(*[st.integers(0, 5)] * 2),
    seed=st.integers(0, 2**16),
    force=st.booleans(),
)
def test_two_d_sampler_bounds_and_content(
    shape: tuple[int, int, int], patch: tuple[int, int], extra: tuple[int, int], seed: int, force: bool
) -> None:
    """2-D patches on any volume, also thinner or smaller in-plane than the patch: one real slice, padded."""
    initial = tuple(p + e for p, e in zip(patch, extra))
    sampler = PatchSampler(patch, initial_patch_size=initial, batch_size=1)
    data, seg = coordinate_case(shape)
    voxels = np.argwhere(np.ones(shape, bool))[:: max(1, int(np.prod(shape)) // 5)]
    locations = {"1": np.concatenate([np.zeros((len(voxels), 1), int), voxels], axis=1)}
    result = sampler.sample(ArrayReader(data, seg), "c", shape, locations, force, np.random.default_rng(seed))
    assert result.data.shape == result.seg.shape == (1, *initial)
    assert 0 <= result.lower[0] < shape[0]  # a slice of the volume, never padding along the slice axis
    lb, ub = patch_bounds(shape, (1, *initial), sampler.need_to_pad)
    assert all(low >= b for low, b in zip(result.lower, lb))
    if not force:
        assert all(low <= b for low, b in zip(result.lower, ub))
    inside = result.data[0] > 0
    assert inside.any()
    assert np.array_equal(inside, result.seg[0] == 1)
    first = np.argwhere(inside)[0]
    index = (result.lower[0], *(int(f + low) for f, low in zip(first, result.lower[1:])))
    assert result.data[(0, *first)] == np.ravel_multi_index(index, shape) + 1


def test_forced_sample_class_is_uniform_among_present_classes() -> None:
    """Class first (uniformly among present classes), then a voxel: a rare class is hit as often as a common one."""
    shape = (30, 30, 30)
    common = np.argwhere(np.ones((30, 30, 10), bool))  # class 1: 9000 voxels, all with x < 10
    locations = {"1": np.concatenate([np.zeros((len(common), 1), int), common], 1),
                 "2": np.array([[0, 25, 25, 25]]), "3": np.zeros((0, 4), np.int64)}  # fmt: skip
    sampler = PatchSampler((4, 4, 4), batch_size=1)
    rng = np.random.default_rng(0)
    hits = [sampler.lower_corner(shape, locations, True, rng) == (23, 23, 23) for _ in range(400)]
    assert 0.4 < np.mean(hits) < 0.6  # class 2 (one voxel) is chosen half the time; class 3 (absent) never


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("batch_size", 0, r"PatchSampler: batch_size must be an integer >= 1; got 0\. Set batch_size=1 or more"),
        (
            "oversample_foreground_percent",
            1.5,
            r"PatchSampler: oversample_foreground_percent must be a number in \[0, 1\]",
        ),
        ("has_ignore_label", 1, r"PatchSampler: has_ignore_label must be True or False; got 1"),
    ],
)
def test_bad_sampler_options_are_rejected(field: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PatchSampler((8, 8, 8), **{field: value})  # type: ignore[arg-type]
