"""Foreground location sampling: keys, sample sizes, coordinates, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError, StoreError
from nnseg.preprocessing._case import location_key, parse_location_key
from nnseg.preprocessing._locations import location_classes, sample_class_locations


def _spec(labels: dict, regions_class_order: tuple[int, ...] | None = None) -> DatasetSpec:
    return DatasetSpec(
        channel_names=("CT",), labels=labels, num_training=1, file_ending=".nii.gz",
        regions_class_order=regions_class_order,
    )  # fmt: skip


def test_location_classes_for_labels_regions_and_ignore() -> None:
    assert location_classes(_spec({"background": 0, "a": 1, "b": 2})) == (1, 2)
    assert location_classes(_spec({"background": 0, "a": 1, "b": 2, "ignore": 3})) == (1, 2, (-1, 0, 1, 2))
    regions = _spec({"background": 0, "whole": (1, 2, 3), "core": (2, 3), "enh": 3}, regions_class_order=(1, 2, 3))
    assert location_classes(regions) == ((1, 2, 3), (2, 3), 3)


def test_location_keys_round_trip() -> None:
    assert [location_key(c) for c in (1, (1, 2), (3,), (-1, 0, 1))] == ["1", "(1, 2)", "(3,)", "(-1, 0, 1)"]
    assert parse_location_key("(1, 2)") == (1, 2)
    assert parse_location_key("7") == 7
    with pytest.raises(StoreError, match="not an int or a tuple of ints"):
        parse_location_key("liver")


def test_small_classes_are_kept_completely_with_channel_zero_coordinates() -> None:
    seg = np.zeros((1, 3, 4, 5), dtype=np.int8)
    seg[0, 1, 2, 3] = seg[0, 2, 0, 0] = 1
    seg[0, 0, 1, 1] = 2
    locations = sample_class_locations(seg, [1, 2, (1, 2)])
    assert sorted(map(tuple, locations["1"])) == [(0, 1, 2, 3), (0, 2, 0, 0)]
    assert locations["2"].tolist() == [[0, 0, 1, 1]]
    assert len(locations["(1, 2)"]) == 3
    assert all(v.dtype == np.int64 and v.shape[1] == 4 for v in locations.values())


def test_absent_classes_get_empty_arrays() -> None:
    seg = np.zeros((1, 2, 2, 2), dtype=np.int8)
    locations = sample_class_locations(seg, [1, (2, 3)])
    assert locations["1"].shape == (0, 4)
    assert locations["(2, 3)"].shape == (0, 4)
    assert locations["1"].dtype == np.int64


def test_sample_size_is_capped_at_10000_but_covers_at_least_one_percent() -> None:
    seg = np.zeros((1, 110, 100, 100), dtype=np.int8)
    seg[0, :50] = 1  # 500 000 voxels -> 10 000 samples
    seg[0, 50:] = 2  # 600 000 voxels -> 6 000 < 10 000 -> 10 000 samples
    seg[0, 0, 0, :10] = 3
    locations = sample_class_locations(seg, [1, 2, 3, (1, 2)])
    assert len(locations["1"]) == 10000
    assert len(locations["2"]) == 10000
    assert len(locations["3"]) == 10
    assert len(locations["(1, 2)"]) == 11000  # ceil(0.01 * 1 099 990) = ceil(10 999.9)
    for key, label_set in (("1", {1}), ("2", {2}), ("(1, 2)", {1, 2})):
        rows = locations[key]
        assert len(np.unique(rows, axis=0)) == len(rows)  # without replacement
        assert set(np.unique(seg[tuple(rows.T)])) <= label_set


def test_sampling_is_deterministic_and_seeded() -> None:
    seg = np.random.default_rng(0).integers(0, 3, size=(1, 30, 30, 30)).astype(np.int8)
    first = sample_class_locations(seg, [1, 2])
    again = sample_class_locations(seg, [1, 2])
    other = sample_class_locations(seg, [1, 2], seed=7)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["1"], other["1"])


def test_ignore_key_covers_annotated_voxels_and_outside_but_not_ignore() -> None:
    seg = np.array([[[[-1, 0, 1, 3]]]], dtype=np.int8)
    locations = sample_class_locations(seg, [1, (-1, 0, 1)])
    assert sorted(locations["(-1, 0, 1)"][:, 3].tolist()) == [0, 1, 2]


def test_sample_class_locations_rejects_multichannel_maps() -> None:
    with pytest.raises(ConfigError, match=r"expects a \(1, z, y, x\) label map"):
        sample_class_locations(np.zeros((2, 2, 2, 2), dtype=np.int8), [1])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), shape=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)))
def test_every_location_carries_its_label(seed: int, shape: tuple[int, int, int]) -> None:
    seg = np.random.default_rng(seed).integers(-1, 4, size=(1, *shape)).astype(np.int16)
    locations = sample_class_locations(seg, [1, 2, 3, (2, 3)])
    for key, labels in (("1", {1}), ("2", {2}), ("3", {3}), ("(2, 3)", {2, 3})):
        rows = locations[key]
        assert len(rows) == int(np.isin(seg, list(labels)).sum())
        assert set(seg[tuple(rows.T)].tolist()) <= labels
