"""Tiling: tile positions, padding and the Gaussian map, by property and against nnU-Net."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import ConfigError
from nnseg.inference._tiling import gaussian_importance_map, padding_for_patch, tile_positions, tile_slices

SIZES = st.lists(st.tuples(st.integers(1, 24), st.integers(0, 50)), min_size=1, max_size=3)


def test_documented_examples() -> None:
    assert tile_positions([110], [64]) == [[0, 23, 46]]
    assert tile_positions([300], [128]) == [[0, 57, 115, 172]]
    assert tile_positions([64], [64]) == [[0]]


@settings(max_examples=40)
@given(SIZES, st.sampled_from([0.25, 0.5, 0.75, 1.0]))
def test_tiles_cover_the_image_and_stay_inside(axes: list[tuple[int, int]], step: float) -> None:
    patch = [p for p, _ in axes]
    size = [p + extra for p, extra in axes]
    covered = np.zeros(size, dtype=bool)
    for slices in tile_slices(size, patch, step):
        assert all(s.stop - s.start == p and s.start >= 0 and s.stop <= n for s, p, n in zip(slices, patch, size))
        covered[slices] = True
    assert covered.all()
    for positions, p in zip(tile_positions(size, patch, step), patch, strict=True):
        gaps = np.diff(positions)
        assert (gaps <= p * step + 1).all()  # neighbours overlap by at least (1 - step) of a patch


def test_two_d_patch_on_a_volume_tiles_every_slice() -> None:
    tiles = list(tile_slices((3, 20, 20), (16, 16)))
    assert len(tiles) == 3 * 4
    assert {t[0].start for t in tiles} == {0, 1, 2}


def test_padding_is_centred_with_the_odd_voxel_high() -> None:
    assert padding_for_patch((5, 10, 64), (8, 13, 32)) == [(1, 2), (1, 2), (0, 0)]
    assert padding_for_patch((4, 5, 6), (8, 8)) == [(0, 0), (1, 2), (1, 1)]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match=r"tile step size must be in \(0, 1\]; got 0"):
        tile_positions([10], [4], 0)
    with pytest.raises(ConfigError, match=r"smaller than the patch"):
        tile_positions([3], [4])


def test_gaussian_peaks_at_ten_in_the_centre_and_has_no_zeros() -> None:
    weights = gaussian_importance_map((9, 16, 33))
    assert weights.dtype == np.float16
    assert np.unravel_index(np.argmax(weights), weights.shape) == (4, 8, 16)
    assert float(weights.max()) == pytest.approx(10.0, rel=1e-3)
    assert (weights > 0).all()


@pytest.mark.parity
@settings(max_examples=25, deadline=None)
@given(SIZES, st.sampled_from([0.3, 0.5, 0.7]))
def test_tile_positions_equal_nnunets(axes: list[tuple[int, int]], step: float) -> None:
    reference = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    patch = [p for p, _ in axes]
    size = [p + extra for p, extra in axes]
    expected = reference.compute_steps_for_sliding_window(tuple(size), tuple(patch), step)
    assert tile_positions(size, patch, step) == [list(map(int, e)) for e in expected]


@pytest.mark.parity
@pytest.mark.parametrize("patch", [(8, 12, 10), (32, 32), (5, 7, 9)])
def test_gaussian_equals_nnunets(patch: tuple[int, ...]) -> None:
    reference = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    import torch

    expected = reference.compute_gaussian(patch, 1 / 8, 10, dtype=torch.float16, device=torch.device("cpu"))
    assert np.array_equal(gaussian_importance_map(patch), expected.numpy())


@settings(max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 24), st.integers(-23, 60)), min_size=1, max_size=3),
       st.sampled_from([0.25, 0.5, 1.0]))  # fmt: skip
def test_first_tile_at_zero_last_at_the_edge_and_the_count_formula(axes: list[tuple[int, int]], step: float) -> None:
    patch = [p for p, _ in axes]
    size = [max(p + extra, 1) for p, extra in axes]  # may be smaller than the patch
    padded = [n + before + after for n, (before, after) in zip(size, padding_for_patch(size, patch), strict=True)]
    assert all(n >= p for n, p in zip(padded, patch, strict=True))
    assert all(n == p for n, s, p in zip(padded, size, patch, strict=True) if s < p)  # padded exactly to the patch
    for positions, n, p in zip(tile_positions(padded, patch, step), padded, patch, strict=True):
        assert positions[0] == 0
        assert positions[-1] + p == n
        assert len(positions) == int(np.ceil((n - p) / (p * step))) + 1
        assert positions == sorted(positions)  # (repeats when patch * step < 1, as in nnU-Net)


@pytest.mark.gpu
def test_accumulation_on_cuda_equals_cpu() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from nnseg.inference import InferenceSettings, predict_logits

    net = torch.nn.Conv3d(1, 2, 3, padding=1)
    data = torch.randn(1, 12, 20, 20)
    cpu = predict_logits(net, data, (8, 8, 8), 2, InferenceSettings(amp=False))
    gpu = predict_logits(net.cuda(), data, (8, 8, 8), 2, InferenceSettings(device="cuda", amp=False,
                                                                           accumulate_on_device=True))  # fmt: skip
    assert torch.allclose(cpu, gpu, atol=1e-4)
