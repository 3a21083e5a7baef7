"""The loader's fast paths give exactly what the plain torch calls they replace give."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.training import _augment_intensity as intensity
from nnseg.training._augmentation import _downsample
from nnseg.training._sampling import crop_and_pad


def conv1d_blur(x: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """The reference: one F.conv1d over the rows of the moved axis."""
    radius = max(1, int(3.0 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    moved = x.movedim(axis, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    mode = "reflect" if moved.shape[-1] > radius else "replicate"
    return F.conv1d(F.pad(rows, (radius, radius), mode=mode), kernel).reshape(moved.shape).movedim(-1, axis)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(2, 24), min_size=2, max_size=3), sigma=st.floats(0.3, 2.5), seed=st.integers(0, 99))
def test_blur_is_bit_identical_to_conv1d(shape: list[int], sigma: float, seed: int) -> None:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 5
    for axis in range(len(shape)):
        assert torch.equal(intensity._blur_axis(x, axis, sigma), conv1d_blur(x, axis, sigma))


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=2, max_size=3),
       scale=st.lists(st.sampled_from([1.0, 0.5, 0.25, 0.125, 0.3, 0.7]), min_size=3, max_size=3))  # fmt: skip
def test_target_downsampling_matches_nearest_exact_interpolation(shape: list[int], scale: list[float]) -> None:
    labels = torch.from_numpy(np.random.default_rng(sum(shape)).integers(0, 4, size=(2, *shape)).astype(np.int16))
    scale = scale[: len(shape)]
    size = [max(1, round(n * v)) for n, v in zip(shape, scale)]
    expected = F.interpolate(labels[None].float(), size=size, mode="nearest-exact")[0].to(torch.int16)
    got = _downsample(labels, scale)
    assert got.is_contiguous()
    assert torch.equal(got, expected)
    assert torch.equal(_downsample(labels > 1, scale), expected > 1)


def test_crop_and_pad_fills_outside_with_0_and_minus_1() -> None:
    data = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    seg = np.ones((1, 4, 5, 6), dtype=np.int8)

    def reader(case_id: str, slices: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
        return data[(slice(None), *slices)], seg[(slice(None), *slices)]

    out, labels = crop_and_pad(reader, "c", (4, 5, 6), (-1, 2, 0), (3, 4, 6))
    expected = np.pad(data[:, 0:2, 2:5, :], [(0, 0), (1, 0), (0, 1), (0, 0)])
    assert out.dtype == np.float32
    assert labels.dtype == np.int16
    assert np.array_equal(out, expected)
    assert np.array_equal(labels, np.pad(seg[:, 0:2, 2:5, :], [(0, 0), (1, 0), (0, 1), (0, 0)], constant_values=-1))
    inside, inside_labels = crop_and_pad(reader, "c", (4, 5, 6), (0, 0, 0), (4, 5, 6))
    assert np.array_equal(inside, data)
    assert np.array_equal(inside_labels, seg)
