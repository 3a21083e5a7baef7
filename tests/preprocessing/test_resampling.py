"""Resampling: new shapes, the separate-z rule, invariants of images and label maps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import ConfigError, PlansError
from nnseg.preprocessing._resampling import (
    Resampler,
    compute_new_shape,
    resample_data,
    resample_seg,
    resampler_from_plan,
    separate_z_axis,
)

PLAN_DATA_KWARGS = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}


def test_compute_new_shape_scales_and_rounds_half_to_even() -> None:
    assert compute_new_shape((10, 20, 30), (1.0, 1.0, 1.0), (2.0, 0.5, 1.0)) == (5, 40, 30)
    # 5 * 1/2 = 2.5 rounds to 2 (Python rounding); 7 * 1/2 = 3.5 rounds to 4
    assert compute_new_shape((5, 7, 1), (1.0, 1.0, 999.0), (2.0, 2.0, 999.0)) == (2, 4, 1)


def test_compute_new_shape_rejects_mismatched_lengths() -> None:
    with pytest.raises(ConfigError, match="one entry per spatial axis"):
        compute_new_shape((10, 20), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("current", "new", "force", "expected"),
    [
        ((5.0, 0.8, 0.8), (5.0, 0.8, 0.8), None, 0),  # anisotropic input: its largest axis
        ((0.8, 5.0, 0.8), (1.0, 1.0, 1.0), None, 1),
        ((1.0, 1.0, 1.0), (1.0, 3.5, 1.0), None, 1),  # isotropic input, anisotropic target
        ((1.0, 1.0, 1.0), (1.2, 1.0, 1.0), None, None),  # nothing anisotropic
        ((3.5, 3.5, 1.0), (1.0, 1.0, 1.0), None, None),  # two axes tie: no separate axis
        ((2.0, 1.0, 1.0), (1.0, 1.0, 1.0), True, 0),  # forced
        ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), True, None),  # forced, but three axes tie
        ((5.0, 0.8, 0.8), (5.0, 0.8, 0.8), False, None),  # forced off
    ],
)
def test_separate_z_axis(current: tuple, new: tuple, force: bool | None, expected: int | None) -> None:
    assert separate_z_axis(current, new, force_separate_z=force) == expected


def test_same_shape_returns_the_input_itself() -> None:
    data = np.random.default_rng(0).normal(size=(2, 4, 5, 6)).astype(np.float32)
    seg = np.zeros((1, 4, 5, 6), dtype=np.int8)
    assert resample_data(data, (4, 5, 6), (1, 1, 1), (2, 2, 2)) is data
    assert resample_seg(seg, (4, 5, 6), (1, 1, 1), (2, 2, 2)) is seg


def test_resample_data_keeps_dtype_and_channels_and_reaches_the_shape() -> None:
    data = np.random.default_rng(1).normal(size=(2, 6, 7, 8)).astype(np.float32)
    out = resample_data(data, (9, 5, 8), (1, 1, 1), (0.7, 1.4, 1.0))
    assert out.shape == (2, 9, 5, 8)
    assert out.dtype == np.float32


def test_constant_image_stays_constant() -> None:
    data = np.full((1, 5, 6, 7), 3.25, dtype=np.float32)
    np.testing.assert_allclose(resample_data(data, (8, 3, 10), (1, 1, 1), (0.6, 2, 0.7)), 3.25, rtol=1e-6)


def test_anisotropic_spacing_resamples_z_separately_with_nearest_neighbour() -> None:
    data = np.random.default_rng(2).normal(size=(1, 4, 10, 10)).astype(np.float32)
    spacing, target, shape = (5.0, 0.8, 0.8), (2.5, 0.8, 0.8), (8, 10, 10)
    default = resample_data(data, shape, spacing, target)
    np.testing.assert_array_equal(default, resample_data(data, shape, spacing, target, force_separate_z=True))
    assert not np.allclose(default, resample_data(data, shape, spacing, target, force_separate_z=False))
    # in-plane size unchanged and order_z 0: every output slice is (up to interpolation noise) an input slice
    for z in range(8):
        np.testing.assert_allclose(default[0, z], data[0, z // 2], atol=1e-5)


def test_separate_z_with_linear_order_z_interpolates_between_slices() -> None:
    data = np.zeros((1, 2, 4, 4), dtype=np.float32)
    data[0, 1] = 1.0
    out = resample_data(data, (4, 4, 4), (4.0, 1.0, 1.0), (2.0, 1.0, 1.0), order=1, order_z=1)
    # pixel-centre positions along z: -0.25, 0.25, 0.75, 1.25 -> clamped, then linear
    np.testing.assert_allclose(out[0, :, 0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_resample_seg_order_0_is_nearest_neighbour() -> None:
    seg = np.array([[[[0, 1], [2, -1]]]], dtype=np.int8)
    out = resample_seg(seg, (1, 4, 4), (1, 1, 1), (1, 0.5, 0.5), order=0)
    np.testing.assert_array_equal(out[0, 0], np.kron(seg[0, 0], np.ones((2, 2), dtype=np.int8)))


def test_resample_seg_treats_minus_one_as_a_label() -> None:
    seg = np.full((1, 4, 6, 6), -1, dtype=np.int16)
    seg[0, :, 2:5, 2:5] = 0
    seg[0, 1:3, 3, 3] = 2
    out = resample_seg(seg, (6, 9, 9), (1, 1, 1), (0.7, 0.7, 0.7))
    assert set(np.unique(out)) <= {-1, 0, 2}
    assert (out == -1).any()
    assert (out == 0).any()


def test_resample_rejects_non_4d_arrays() -> None:
    with pytest.raises(ConfigError, match=r"expects a \(c, z, y, x\) array"):
        resample_data(np.zeros((4, 5, 6)), (2, 2, 2), (1, 1, 1), (2, 2, 2))


def test_resampler_from_plan_binds_the_kwargs() -> None:
    resampler = resampler_from_plan("resample_data_or_seg_to_shape", {**PLAN_DATA_KWARGS, "is_seg": True, "order": 1})
    assert resampler == Resampler(is_seg=True, order=1, order_z=0, force_separate_z=None)
    seg = np.zeros((1, 2, 2, 2), dtype=np.int8)
    assert resampler(seg, (3, 3, 3), (1, 1, 1), (0.7, 0.7, 0.7)).shape == (1, 3, 3, 3)


def test_resampler_from_plan_rejects_unknown_functions_and_arguments() -> None:
    with pytest.raises(PlansError, match=r"'resample_data_or_seg_to_shap' is not supported.*Did you mean"):
        resampler_from_plan("resample_data_or_seg_to_shap", PLAN_DATA_KWARGS)
    with pytest.raises(PlansError, match=r"unknown keyword argument\(s\) \['mode'\]"):
        resampler_from_plan("resample_data_or_seg_to_shape", {**PLAN_DATA_KWARGS, "mode": "edge"})


shapes = st.tuples(st.integers(1, 5), st.integers(2, 6), st.integers(2, 6))
spacings = st.tuples(*(st.sampled_from([0.5, 0.8, 1.0, 1.5, 4.0]) for _ in range(3)))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, new_shape=shapes, spacing=spacings, order=st.sampled_from([0, 1, 3]), seed=st.integers(0, 99))
def test_labels_stay_in_the_label_set(shape: tuple, new_shape: tuple, spacing: tuple, order: int, seed: int) -> None:
    seg = np.random.default_rng(seed).choice(np.array([-1, 0, 1, 3], dtype=np.int8), size=(1, *shape))
    out = resample_seg(seg, new_shape, spacing, (1.0, 1.0, 1.0), order=order)
    assert out.shape == (1, *new_shape)
    assert out.dtype == seg.dtype
    assert set(np.unique(out)) <= set(np.unique(seg))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, new_shape=shapes, spacing=spacings, seed=st.integers(0, 99))
def test_data_stays_within_the_input_range(shape: tuple, new_shape: tuple, spacing: tuple, seed: int) -> None:
    data = np.random.default_rng(seed).uniform(-3, 5, size=(2, *shape)).astype(np.float32)
    out = resample_data(data, new_shape, spacing, (1.0, 1.0, 1.0))
    assert out.shape == (2, *new_shape)
    assert out.min() >= data.min() - 1e-5
    assert out.max() <= data.max() + 1e-5
