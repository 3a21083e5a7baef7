"""Cropping to the nonzero region: bounding boxes, the -1 outside label, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnseg._cropping import (
    NONZERO_LABEL,
    bounding_box_of_mask,
    bounding_box_to_slices,
    crop_to_nonzero,
    nonzero_mask,
)
from nnseg.errors import ConfigError


def test_bounding_box_is_tight_and_half_open() -> None:
    mask = np.zeros((5, 6, 7), dtype=bool)
    mask[1, 2, 3] = True
    mask[3, 4, 3] = True
    assert bounding_box_of_mask(mask) == ((1, 4), (2, 5), (3, 4))
    assert bounding_box_to_slices(((1, 4), (2, 5))) == (slice(1, 4), slice(2, 5))


def test_empty_mask_gives_the_full_extent() -> None:
    assert bounding_box_of_mask(np.zeros((3, 4, 2), dtype=bool)) == ((0, 3), (0, 4), (0, 2))


def test_nonzero_mask_is_the_or_over_channels_with_holes_filled() -> None:
    data = np.zeros((2, 5, 7, 7), dtype=np.float32)
    data[0, 1:4, 1:6, 1:6] = 1.0
    data[0, 2, 3, 3] = 0.0  # an enclosed hole in channel 0
    data[1, 0, 0, 0] = -2.0  # negative values count as nonzero
    mask = nonzero_mask(data)
    assert mask.dtype == bool
    assert mask[2, 3, 3]
    assert mask[0, 0, 0]
    assert not mask[0, 0, 6]
    assert mask.sum() == 3 * 5 * 5 + 1


def test_holes_of_2d_images_are_not_filled_as_in_nnunet() -> None:
    # A (c, 1, y, x) image: every voxel touches the array border along axis 0, so no hole is enclosed.
    data = np.ones((1, 1, 5, 5), dtype=np.float32)
    data[0, 0, 2, 2] = 0.0
    assert not nonzero_mask(data)[0, 2, 2]
    _, seg, _ = crop_to_nonzero(data)
    assert seg[0, 0, 2, 2] == NONZERO_LABEL


def test_crop_sets_background_outside_the_region_to_minus_one_and_keeps_labels() -> None:
    data = np.zeros((1, 4, 6, 6), dtype=np.float32)
    data[0, 1:3, 1:5, 1:5] = 1.0
    data[0, 1, 1, 1] = 0.0  # a corner notch: outside the region but inside the box
    seg = np.zeros((1, 4, 6, 6), dtype=np.uint8)
    seg[0, 2, 2:4, 2:4] = 2
    cropped, out, bbox = crop_to_nonzero(data, seg)
    assert bbox == ((1, 3), (1, 5), (1, 5))
    assert cropped.shape == out.shape == (1, 2, 4, 4)
    assert out.dtype == np.int8
    assert out[0, 0, 0, 0] == NONZERO_LABEL
    assert (out[0, 1, 1:3, 1:3] == 2).all()
    assert (out == NONZERO_LABEL).sum() == 1


def test_labels_outside_the_region_are_kept_not_overwritten() -> None:
    data = np.zeros((1, 1, 4, 4), dtype=np.float32)
    data[0, 0, 1:3, 0:4] = 1.0
    data[0, 0, 1, 0] = 0.0  # on the border of the region: not a hole, stays outside
    seg = np.zeros((1, 1, 4, 4), dtype=np.int16)
    seg[0, 0, 1, 0] = 1
    _, out, _ = crop_to_nonzero(data, seg)
    assert out[0, 0, 0, 0] == 1  # a label wins over "outside"
    assert out.dtype == np.int16


def test_without_seg_a_fresh_int8_zero_minus_one_map_is_made_and_inputs_are_untouched() -> None:
    data = np.zeros((1, 3, 3, 3), dtype=np.float32)
    data[0, 1, 1, 1] = 5.0
    data[0, 1, 1, 2] = 5.0
    before = data.copy()
    cropped, seg, bbox = crop_to_nonzero(data)
    assert bbox == ((1, 2), (1, 2), (1, 3))
    assert seg.dtype == np.int8
    assert seg.shape == (1, 1, 1, 2)
    assert (seg == 0).all()
    np.testing.assert_array_equal(data, before)
    assert np.shares_memory(cropped, data)


def test_wide_unsigned_labels_are_widened_to_a_signed_type() -> None:
    data = np.ones((1, 2, 2, 2), dtype=np.float32)
    seg = np.full((1, 2, 2, 2), 300, dtype=np.uint16)
    _, out, _ = crop_to_nonzero(data, seg)
    assert out.dtype == np.int16
    assert (out == 300).all()


def test_bad_shapes_and_dtypes_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"channel-first \(c, \*spatial\).*got shape \(4,\)"):
        crop_to_nonzero(np.ones(4))
    with pytest.raises(ConfigError, match=r"seg shape \(1, 2, 2\) does not match data shape \(1, 2, 2, 2\)"):
        crop_to_nonzero(np.ones((1, 2, 2, 2)), np.zeros((1, 2, 2), dtype=np.int8))
    with pytest.raises(ConfigError, match="seg must hold integer labels; got dtype <U1"):
        crop_to_nonzero(np.ones((1, 1, 1, 1)), np.array([[[["a"]]]]))


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=6),
                  elements=st.sampled_from([0.0, 0.0, 1.0, -3.5])))  # fmt: skip
def test_crop_keeps_every_nonzero_voxel_and_the_box_is_tight(volume: np.ndarray) -> None:
    data = volume[None]
    cropped, seg, bbox = crop_to_nonzero(data)
    assert int(np.count_nonzero(cropped)) == int(np.count_nonzero(data))
    assert seg.shape == cropped.shape
    if np.count_nonzero(data):
        assert (seg[0][cropped[0] != 0] == 0).all()
        for axis in range(3):  # every face of the box touches a nonzero voxel
            assert np.take(cropped[0], 0, axis=axis).any()
            assert np.take(cropped[0], -1, axis=axis).any()
    else:
        assert bbox == tuple((0, size) for size in volume.shape)
        assert (seg == NONZERO_LABEL).all()


def test_nonzero_mask_fills_holes_like_scipy() -> None:
    from scipy import ndimage

    from nnseg._cropping import nonzero_mask

    rng = np.random.default_rng(0)
    for _ in range(300):
        shape = tuple(int(v) for v in rng.integers(1, 9, size=int(rng.integers(1, 4))))
        data = (rng.random((2, *shape)) < rng.random()).astype(np.float32)
        expected = ndimage.binary_fill_holes(np.any(data != 0, axis=0))
        np.testing.assert_array_equal(nonzero_mask(data), expected)
