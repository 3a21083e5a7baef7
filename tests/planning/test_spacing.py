"""Target spacing (anisotropy rule), transposition, resampled shapes and the lowres spacing step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnseg.planning._spacing import (
    lowres_spacing_step,
    median_resampled_shape,
    median_shape,
    median_spacing,
    resampled_shape,
    target_spacing,
    transpose_axes,
)


def test_medians_are_per_axis() -> None:
    assert median_spacing([(1.0, 2.0, 3.0), (3.0, 2.0, 1.0), (2.0, 2.0, 2.0)]) == (2.0, 2.0, 2.0)
    assert median_shape([(10, 20, 30), (12, 20, 31)]) == (11.0, 20.0, 30.5)


def test_isotropic_target_is_the_median() -> None:
    spacings = [(1.0, 1.0, 1.0), (1.2, 0.9, 0.9), (0.8, 1.1, 1.1)]
    assert target_spacing(spacings, [(100, 100, 100)] * 3) == (1.0, 1.0, 1.0)


def test_anisotropic_spacing_and_few_slices_take_the_tenth_percentile() -> None:
    z = np.linspace(4.0, 6.0, 11)  # median 5.0, 10th percentile 4.2
    spacings = [(float(v), 1.0, 1.0) for v in z]
    target = target_spacing(spacings, [(24, 200, 200)] * 11)
    assert target[0] == pytest.approx(4.2)
    assert target[1:] == (1.0, 1.0)


def test_anisotropic_spacing_with_many_slices_keeps_the_median() -> None:
    spacings = [(float(v), 1.0, 1.0) for v in np.linspace(4.0, 6.0, 11)]
    assert target_spacing(spacings, [(100, 200, 200)] * 11)[0] == 5.0  # 100 * 3 >= 200: not few voxels


def test_exactly_three_to_one_is_not_anisotropic() -> None:
    spacings = [(3.0, 1.0, 1.0), (2.0, 1.0, 1.0), (4.0, 1.0, 1.0)]
    assert target_spacing(spacings, [(10, 200, 200)] * 3) == (3.0, 1.0, 1.0)  # rule is strictly greater


def test_tenth_percentile_is_never_finer_than_in_plane() -> None:
    spacings = [(0.5, 1.0, 1.0)] * 2 + [(8.0, 1.0, 1.0)] * 9  # 10th percentile 0.5: finer than in-plane
    target = target_spacing(spacings, [(20, 200, 200)] * 11)
    assert target[0] == pytest.approx(1.0 + 1e-5)


def test_custom_anisotropy_threshold() -> None:
    spacings = [(float(v), 1.0, 1.0) for v in np.linspace(2.0, 3.0, 11)]
    assert target_spacing(spacings, [(20, 200, 200)] * 11, anisotropy_threshold=3)[0] == 2.5
    assert target_spacing(spacings, [(20, 200, 200)] * 11, anisotropy_threshold=2)[0] == pytest.approx(2.1)


def test_coarsest_axis_goes_first() -> None:
    assert transpose_axes((1.0, 1.0, 1.0)) == ((0, 1, 2), (0, 1, 2))
    assert transpose_axes((2.5, 0.8, 0.8)) == ((0, 1, 2), (0, 1, 2))
    assert transpose_axes((0.7, 0.7, 2.0)) == ((2, 0, 1), (1, 2, 0))
    assert transpose_axes((0.7, 3.0, 0.7)) == ((1, 0, 2), (1, 0, 2))


def test_suppress_transpose_keeps_the_identity() -> None:
    assert transpose_axes((0.7, 0.7, 2.0), suppress=True) == ((0, 1, 2), (0, 1, 2))


@given(st.lists(st.floats(0.1, 10.0), min_size=3, max_size=3))
def test_backward_undoes_forward(spacing: list[float]) -> None:
    forward, backward = transpose_axes(spacing)
    assert sorted(forward) == [0, 1, 2]
    assert [forward[b] for b in backward] == [0, 1, 2]
    assert spacing[forward[0]] == max(spacing)


def test_resampled_shape_rounds_half_to_even() -> None:
    assert resampled_shape((10, 10, 10), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)) == (5, 5, 5)
    assert resampled_shape((5, 7, 9), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0)) == (2, 4, 4)  # 2.5, 3.5, 4.5
    assert resampled_shape((100, 100, 1), (0.5, 1.0, 1.0), (1.0, 0.5, 1.0)) == (50, 200, 1)


def test_median_resampled_shape_resamples_every_case_first() -> None:
    shapes, spacings = [(10, 10, 10), (20, 20, 20), (40, 40, 40)], [(2.0, 2.0, 2.0), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)]
    assert median_resampled_shape(spacings, shapes, (1.0, 1.0, 1.0)) == (20.0, 20.0, 20.0)


def test_lowres_step_coarsens_only_the_fine_axes_first() -> None:
    spacing = np.array([2.5, 0.8, 0.8])
    step = lowres_spacing_step(spacing)
    assert step.tolist() == pytest.approx([2.5, 0.824, 0.824])
    assert spacing.tolist() == [2.5, 0.8, 0.8]  # the input is not modified


def test_lowres_step_coarsens_every_axis_when_none_is_much_finer() -> None:
    assert lowres_spacing_step(np.array([2.0, 1.0, 1.5]), 1.5).tolist() == [3.0, 1.5, 2.25]
