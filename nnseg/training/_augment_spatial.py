"""Spatial augmentation: rotation and scaling about the patch centre, then a centred crop to the final patch.

The image is resampled (tri/bi)linearly with zero padding. The label map is resampled label by label: each
label's indicator is interpolated linearly and every output voxel takes the label with the largest value,
with the ``-1`` label (outside the case) filling everything that falls outside the input. Without rotation
or scaling the patch is a plain centred crop (no interpolation). All in torch, on the CPU.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["initial_patch_size", "rotation_matrix", "spatial_transform"]


def _axis_rotation(angle: float, axis: int) -> np.ndarray:
    """One 3-D rotation about array axis ``axis`` (the transpose of batchgeneratorsv2's matrix for that angle)."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
    if axis == 1:
        return np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    return np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Return the rotation for one angle (2-D) or three angles about axes 0, 1, 2 (3-D, ``R2 @ R1 @ R0``).

    :func:`spatial_transform` with angles ``-a`` gives exactly batchgeneratorsv2's ``SpatialTransform`` with
    angles ``a`` (a parity test pins it); the angles are drawn symmetrically, so the two pipelines draw
    rotations from the same distribution.
    """
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, s], [-s, c]])
    return _axis_rotation(angles[2], 2) @ _axis_rotation(angles[1], 1) @ _axis_rotation(angles[0], 0)


def initial_patch_size(
    patch_size: Sequence[int], max_rotation: Sequence[float], *, dummy_2d: bool = False, min_scale: float = 0.85
) -> tuple[int, ...]:
    """Return the patch to crop before spatial augmentation so rotation and scaling have room.

    The extent vector is rotated about each axis separately by that axis's largest angle (capped at 90
    degrees), the per-axis maximum of the absolute coordinates is divided by ``min_scale`` and truncated.
    With ``dummy_2d`` axis 0 keeps its size. 128**3 at 30 degrees gives 205**3.

    Args:
        patch_size: The final patch (2 or 3 entries).
        max_rotation: The largest absolute angle per rotation axis, in radians (1 entry in 2-D, 3 in 3-D).
        dummy_2d: The 3-D patch is augmented slice-wise (axis 0 is not enlarged).
        min_scale: nnU-Net's constant 0.85.
    """
    extent = np.asarray(patch_size, dtype=float)
    angles = [min(abs(float(a)), math.pi / 2) for a in max_rotation]
    largest = extent.copy()
    if len(extent) == 2:
        largest = np.maximum(largest, np.abs(rotation_matrix(angles[:1]) @ extent))
    else:
        for axis in range(3):
            largest = np.maximum(largest, np.abs(_axis_rotation(angles[axis], axis) @ extent))
    result = [int(v / min_scale) for v in largest]
    if dummy_2d:
        result[0] = int(patch_size[0])
    return tuple(result)


def affine_theta(
    in_shape: Sequence[int], out_shape: Sequence[int], matrix: np.ndarray, centre: np.ndarray
) -> torch.Tensor:
    """The ``affine_grid`` matrix (``(1, ndim, ndim + 1)``, x, y, z order) of an affine map.

    Output voxel ``j`` (centred: ``c = j - (out - 1) / 2``) reads input voxel ``matrix @ c + centre``.
    """
    sizes_in, sizes_out = np.asarray(in_shape, float), np.asarray(out_shape, float)
    linear = np.diag(1.0 / sizes_in) @ matrix @ np.diag(sizes_out)  # normalised coordinates, align_corners=False
    shift = (2 * centre + 1) / sizes_in - 1
    theta = torch.zeros(1, len(in_shape), len(in_shape) + 1)
    theta[0, :, :-1] = torch.as_tensor(linear[::-1, ::-1].copy(), dtype=torch.float32)  # x, y, z order
    theta[0, :, -1] = torch.as_tensor(shift[::-1].copy(), dtype=torch.float32)
    return theta


def _grid(in_shape: Sequence[int], out_shape: Sequence[int], matrix: np.ndarray, centre: np.ndarray) -> torch.Tensor:
    """The ``grid_sample`` grid (``(1, *out, ndim)``, last axis in x, y, z order) of an affine map."""
    theta = affine_theta(in_shape, out_shape, matrix, centre)
    return F.affine_grid(theta, [1, 1, *(int(o) for o in out_shape)], align_corners=False)


def _touched_box(in_shape: Sequence[int], out_shape: Sequence[int], matrix: np.ndarray) -> tuple[slice, ...]:
    """The input region the output grid reads from (with a one-voxel margin), clipped to the input."""
    half = (np.asarray(out_shape, float) - 1) / 2
    corners = np.array(list(itertools.product(*[(-h, h) for h in half])))
    mapped = corners @ matrix.T + (np.asarray(in_shape, float) - 1) / 2
    low = np.clip(np.floor(mapped.min(axis=0)) - 1, 0, None).astype(int)
    high = np.minimum(np.ceil(mapped.max(axis=0)).astype(int) + 2, np.asarray(in_shape))
    return tuple(slice(int(a), int(max(b, a + 1))) for a, b in zip(low, high))


def _inside_weight(grid: torch.Tensor, in_shape: Sequence[int]) -> torch.Tensor:
    """How much of each output voxel's linear interpolation falls inside the input (1 inside, 0 far outside).

    Equal to resampling a volume of ones with zero padding, computed per axis from the grid.
    """
    weight = torch.ones(grid.shape[1:-1])
    for position, size in enumerate(reversed(list(in_shape))):  # grid axis 0 is x, the last array axis
        voxel = ((grid[0, ..., position] + 1) * size - 1) / 2
        weight *= (1 + voxel.clamp(max=0) - (voxel - (size - 1)).clamp(min=0)).clamp(0, 1)
    return weight


def _centre_crop(array: torch.Tensor, out_shape: Sequence[int]) -> torch.Tensor:
    starts = [(n - o) // 2 for n, o in zip(array.shape[1:], out_shape)]
    index = tuple(slice(s, s + o) for s, o in zip(starts, out_shape))
    return array[(slice(None),) + index]


def _resample_labels(seg: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Resample a ``(k, *spatial)`` integer label map through its label indicators (largest score wins).

    Only labels other than background are interpolated; the background score is what is left of the inside
    weight, and -1 (outside the case) also collects everything that falls outside the input.
    """
    counts = torch.bincount(seg.flatten().to(torch.int64) + 1)
    present = [int(v) - 1 for v in torch.nonzero(counts).flatten()]
    inside = _inside_weight(grid, seg.shape[1:]).expand(seg.shape[0], *grid.shape[1:-1])
    best_score, best_label = torch.full(inside.shape, -1.0), torch.zeros(inside.shape, dtype=seg.dtype)
    outside, total = 1.0 - inside, torch.zeros(inside.shape)
    for label in present:
        if label == 0:
            continue
        indicator = (seg == label).to(torch.float32).unsqueeze(0)
        score = F.grid_sample(indicator, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        total += score
        if label == -1:
            outside += score
            continue
        best_label = torch.where(score > best_score, torch.tensor(label, dtype=seg.dtype), best_label)
        best_score = torch.maximum(best_score, score)
    background = inside - total
    best_label = torch.where(background >= best_score, torch.tensor(0, dtype=seg.dtype), best_label)
    best_score = torch.maximum(best_score, background)
    best_label = torch.where(outside > best_score, torch.tensor(-1, dtype=seg.dtype), best_label)
    return best_label


def spatial_transform(
    data: torch.Tensor,
    seg: torch.Tensor,
    out_shape: Sequence[int],
    angles: Sequence[float] | None,
    scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and scale ``(c, *spatial)`` data and ``(k, *spatial)`` labels about the centre; crop to ``out_shape``.

    Args:
        data: float32 image channels.
        seg: int16 labels (-1 outside the case).
        out_shape: The final patch (same number of axes as the input).
        angles: Rotation angles in radians (1 in 2-D, 3 in 3-D), or None for no rotation.
        scale: Zoom factor (> 1 samples a larger region, so objects look smaller), or None.
    """
    if angles is None and scale is None:
        return _centre_crop(data, out_shape), _centre_crop(seg, out_shape)
    ndim, in_shape = len(out_shape), tuple(data.shape[1:])
    matrix = np.eye(ndim) if angles is None else rotation_matrix(angles)
    if scale is not None:
        matrix = matrix * float(scale)
    box = _touched_box(data.shape[1:], out_shape, matrix)
    data, seg = data[(slice(None),) + box], seg[(slice(None),) + box]
    centre = np.array([(full - 1) / 2 - b.start for full, b in zip(in_shape, box)])
    grid = _grid(data.shape[1:], out_shape, matrix, centre)
    image = F.grid_sample(data.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    return image, _resample_labels(seg.contiguous(), grid)
