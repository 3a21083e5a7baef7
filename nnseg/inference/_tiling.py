"""Tiling for sliding-window inference: tile positions, centred padding and the Gaussian importance map.

All functions are pure and follow nnU-Net v2's rules, so tiles land on the same voxels:

* positions per axis: ``n = ceil((size - patch) / (patch * step)) + 1`` tiles spread evenly with
  ``round(i * (size - patch) / (n - 1))``;
* images smaller than the patch are padded with zeros, centred, the odd voxel on the high side;
* the importance map is a delta at ``patch // 2`` blurred with ``sigma = patch / 8``, scaled to a maximum of 10,
  with zeros replaced by its smallest non-zero value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from nnseg.errors import ConfigError

__all__ = [
    "gaussian_importance_map",
    "padding_for_patch",
    "tile_positions",
    "tile_slices",
]

GAUSSIAN_SIGMA_SCALE = 1 / 8
GAUSSIAN_MAX = 10.0


def tile_positions(image_size: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5) -> list[list[int]]:
    """Return the start index of every tile along each axis.

    Args:
        image_size: Spatial size of the (padded) image; every axis must be at least the patch size.
        patch_size: Spatial patch size.
        step_size: Step as a fraction of the patch, in ``(0, 1]`` (nnU-Net: 0.5).

    Raises:
        ConfigError: If ``step_size`` is out of range, the sizes disagree in length, or the image is smaller
            than the patch along an axis.
    """
    if not 0 < step_size <= 1:
        raise ConfigError(f"tile step size must be in (0, 1]; got {step_size}. nnU-Net uses 0.5.")
    if len(image_size) != len(patch_size):
        raise ConfigError(f"image size {tuple(image_size)} and patch size {tuple(patch_size)} differ in dimensions.")
    positions = []
    for size, patch in zip(image_size, patch_size, strict=True):
        if size < patch:
            raise ConfigError(
                f"image size {tuple(image_size)} is smaller than the patch {tuple(patch_size)}; pad first."
            )
        count = math.ceil((size - patch) / (patch * step_size)) + 1
        spread = (size - patch) / (count - 1) if count > 1 else 0.0
        positions.append([int(round(spread * i)) for i in range(count)])
    return positions


def tile_slices(
    image_size: Sequence[int], patch_size: Sequence[int], step_size: float = 0.5
) -> Iterator[tuple[slice, ...]]:
    """Yield the spatial slices of every tile, in nnU-Net's order (last axis fastest).

    A 2-D patch on a 3-D image yields one 2-D grid per slice along axis 0, with an integer index first.
    """
    if len(patch_size) == len(image_size) - 1:
        for index in range(image_size[0]):
            for tile in tile_slices(image_size[1:], patch_size, step_size):
                yield (slice(index, index + 1), *tile)
        return
    grid = tile_positions(image_size, patch_size, step_size)
    for starts in itertools.product(*grid):
        yield tuple(slice(s, s + p) for s, p in zip(starts, patch_size, strict=True))


def padding_for_patch(image_size: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, int]]:
    """Padding ``(before, after)`` per axis that makes each axis at least the patch size, centred.

    Axes that are not covered by ``patch_size`` (a leading axis for 2-D patches) get no padding.
    """
    leading = len(image_size) - len(patch_size)
    pads = [(0, 0)] * leading
    for size, patch in zip(image_size[leading:], patch_size, strict=True):
        missing = max(patch - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


@lru_cache(maxsize=4)
def _gaussian(patch_size: tuple[int, ...]) -> np.ndarray:
    delta = np.zeros(patch_size, dtype=np.float64)
    delta[tuple(p // 2 for p in patch_size)] = 1
    blurred = gaussian_filter(delta, [p * GAUSSIAN_SIGMA_SCALE for p in patch_size], order=0, mode="constant", cval=0)
    blurred = blurred / (blurred.max() / GAUSSIAN_MAX)
    blurred.setflags(write=False)
    return blurred


def gaussian_importance_map(patch_size: Sequence[int], dtype: np.dtype | type = np.float16) -> np.ndarray:
    """nnU-Net's Gaussian weighting of a tile (maximum 10 at ``patch // 2``), as a new array of ``dtype``.

    Zeros (after the cast to ``dtype``) are replaced by the smallest non-zero value, so every voxel of a tile
    has a positive weight.
    """
    weights = _gaussian(tuple(int(p) for p in patch_size)).astype(dtype)
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights
