"""Patch size and U-Net topology, as nnU-Net v2 chooses them (pure functions, no torch).

* :func:`initial_patch_size`: the starting patch, shaped like the physical aspect ratio.
* :func:`pooling_topology`: how often and along which axes the network downsamples, the kernel sizes
  of every stage, and the patch padded up to what the downsampling needs.
* :func:`shrink_patch`: one step of the loop that makes the patch smaller until it fits the budget.
* :func:`feature_map_size`: the memory proxy nnU-Net compares against its budget, computed in closed
  form (it equals ``compute_conv_feature_map_size`` of ``dynamic_network_architectures``'s
  ``PlainConvUNet`` / ``ResidualEncoderUNet`` without building the network).

All sizes are in the (transposed) axis order of the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A sequence of floats: a list, a tuple or a 1-D NumPy array.
Floats = Sequence[float] | np.ndarray

__all__ = [
    "Floats",
    "Topology",
    "feature_map_size",
    "features_per_stage",
    "initial_patch_size",
    "pad_to_multiple",
    "pooling_topology",
    "repeat_last",
    "shrink_patch",
]

# Volume of the starting patch before clipping: 256**3 voxels in 3-D, 2048**2 pixels in 2-D.
_START_EDGE = {3: 256, 2: 2048}


@dataclass(frozen=True, slots=True)
class Topology:
    """Downsampling plan of a U-Net for one patch size.

    Args:
        patch_size: The patch, padded so that every axis is divisible by ``divisor``.
        strides: One stride per stage; the first stage never downsamples (all ones).
        kernel_sizes: One convolution kernel size per stage; the last (bottleneck) is all threes.
        divisor: ``2 ** (number of poolings)`` per axis (nnU-Net's ``shape_must_be_divisible_by``).
    """

    patch_size: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    divisor: tuple[int, ...]

    @property
    def num_stages(self) -> int:
        """Number of resolution stages (1 + number of poolings)."""
        return len(self.strides)


def initial_patch_size(spacing: Floats, median_shape: Floats) -> tuple[float, ...]:
    """Return the starting patch: the aspect ratio of ``1 / spacing`` scaled to 256³ (3-D) or 2048² (2-D).

    Each axis is rounded (half to even), then clipped to the median shape. A clipped axis keeps the
    median's value, which may be fractional; :func:`pooling_topology` pads it up to an integer.

    Args:
        spacing: Target spacing of the configuration (2 or 3 axes).
        median_shape: Median image shape at that spacing.
    """
    inverse = 1 / np.asarray(spacing, dtype=np.float64)
    ndim = len(inverse)
    scale = (_START_EDGE[ndim] ** ndim / np.prod(inverse)) ** (1 / ndim)
    rounded = [round(float(v)) for v in inverse * scale]
    return tuple(float(min(p, m)) for p, m in zip(rounded, median_shape))


def pad_to_multiple(shape: Floats, divisor: Sequence[int]) -> tuple[int, ...]:
    """Round every axis of ``shape`` up to the next multiple of ``divisor`` (unchanged if already one)."""
    return tuple(int(math.ceil(s / d) * d) for s, d in zip(shape, divisor))


def _pool_axes(size: list[float], spacing: list[float], min_edge: int) -> list[int]:
    """Return the axes to downsample next (empty when the network is deep enough)."""
    large = [a for a in range(len(size)) if size[a] >= 2 * min_edge]
    if not large:
        return []
    finest = min(spacing[a] for a in large)
    chosen = [a for a in large if spacing[a] / finest < 2]
    if len(chosen) == 1 and size[chosen[0]] < 3 * min_edge:
        return []
    return chosen


def pooling_topology(spacing: Floats, patch_size: Floats, min_edge: int = 4) -> Topology:
    """Plan downsampling and kernel sizes for ``patch_size`` at ``spacing`` (nnU-Net's rule, no depth cap).

    Repeatedly downsample (stride 2) every axis that is at least ``2 * min_edge`` voxels long and whose
    current spacing is below twice the finest such spacing; a lone axis must be ``3 * min_edge`` long.
    An axis switches to kernel size 3 once its current spacing is below twice the finest current spacing
    of all axes and keeps it. The patch is padded up to a multiple of ``2 ** poolings`` per axis.

    Args:
        spacing: Target spacing (2 or 3 axes).
        patch_size: Patch to plan for (may be fractional after clipping to a median shape).
        min_edge: Smallest edge length of the lowest-resolution feature map.
    """
    ndim = len(spacing)
    size = [float(v) for v in patch_size]
    current = [float(v) for v in spacing]
    kernel = [1] * ndim
    strides: list[tuple[int, ...]] = [(1,) * ndim]
    kernels: list[tuple[int, ...]] = []
    while axes := _pool_axes(size, current, min_edge):
        finest = min(current)
        kernel = [3 if current[a] / finest < 2 else kernel[a] for a in range(ndim)]
        kernels.append(tuple(kernel))
        for a in axes:
            current[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        strides.append(tuple(2 if a in axes else 1 for a in range(ndim)))
    kernels.append((3,) * ndim)
    divisor = tuple(int(np.prod([s[a] for s in strides])) for a in range(ndim))
    return Topology(pad_to_multiple(patch_size, divisor), tuple(strides), tuple(kernels), divisor)


def shrink_patch(
    spacing: Floats, topology: Topology, median_shape: Floats, min_edge: int = 4
) -> tuple[int, tuple[int, ...], Topology]:
    """Make the patch one step smaller, as nnU-Net's fitting loop does.

    The axis with the largest ``patch / median_shape`` ratio (the last one on ties) loses one divisor's worth of
    voxels, where the divisor is the one the *tentatively* shrunk patch would need: subtracting the
    current divisor could skip sizes the shallower network allows (e.g. 224 between 256 and 192).

    Args:
        spacing: Target spacing.
        topology: Current topology (its ``patch_size`` is the patch to shrink).
        median_shape: Median image shape at ``spacing``.
        min_edge: Smallest edge length of the lowest-resolution feature map.

    Returns:
        ``(axis, unpadded_patch, new_topology)``: the axis shrunk, the patch after subtraction, and the
        topology of that patch (whose ``patch_size`` is padded again).
    """
    patch = list(topology.patch_size)
    ratios = [p / m for p, m in zip(patch, median_shape)]
    axis = max(a for a, r in enumerate(ratios) if r == max(ratios))
    tentative = list(patch)
    tentative[axis] -= topology.divisor[axis]
    step = pooling_topology(spacing, tentative, min_edge).divisor[axis]
    patch[axis] -= step
    return axis, tuple(patch), pooling_topology(spacing, patch, min_edge)


def repeat_last(values: Sequence[int], length: int) -> tuple[int, ...]:
    """Return the first ``length`` entries of ``values``, repeating its last entry as often as needed."""
    values = tuple(int(v) for v in values)
    return values[:length] + values[-1:] * max(0, length - len(values))


def features_per_stage(num_stages: int, base: int, maximum: int) -> tuple[int, ...]:
    """Return ``min(base * 2**s, maximum)`` for every stage ``s``."""
    return tuple(min(base * 2**s, maximum) for s in range(num_stages))


def feature_map_size(
    patch_size: Sequence[int],
    strides: Sequence[Sequence[int]],
    features: Sequence[int],
    encoder_per_stage: Sequence[int],
    decoder_per_stage: Sequence[int],
    num_classes: int,
    *,
    residual: bool = False,
) -> int:
    """Count the output elements of every convolution of a U-Net for one sample (nnU-Net's memory proxy).

    Equals ``compute_conv_feature_map_size(patch_size)`` of ``dynamic_network_architectures``'s
    ``PlainConvUNet`` (``residual=False``; ``encoder_per_stage`` = convs per stage) or
    ``ResidualEncoderUNet`` (``residual=True``; ``encoder_per_stage`` = basic blocks per stage) built
    without deep supervision. Every convolution with padding ``k // 2`` and stride ``s`` maps an axis of
    length ``x`` to ``x // s``.

    Args:
        patch_size: Input patch.
        strides: Stride of every stage.
        features: Output channels of every stage.
        encoder_per_stage: Convs (plain) or residual blocks (residual) of every encoder stage.
        decoder_per_stage: Convs of every decoder stage, deepest first (one entry fewer than stages).
        num_classes: Output channels of the segmentation head (counted once, at full resolution).
        residual: Count a residual encoder (stem conv, two convs per block, 1x1 projection where the
            first block of a stage changes resolution or width).
    """
    size = [int(v) for v in patch_size]
    total = features[0] * math.prod(size) if residual else 0
    previous = features[0]
    skips: list[int] = []
    for stage, (stride, width) in enumerate(zip(strides, features)):
        size = [x // s for x, s in zip(size, stride)]
        voxels = math.prod(size)
        if residual:
            projection = any(s != 1 for s in stride) or previous != width
            total += (2 * encoder_per_stage[stage] + int(projection)) * width * voxels
        else:
            total += encoder_per_stage[stage] * width * voxels
        skips.append(voxels)
        previous = width
    for depth, stage in enumerate(range(len(features) - 2, -1, -1)):
        # transposed conv output + decoder convs, all at the skip's resolution and width
        total += (1 + decoder_per_stage[depth]) * features[stage] * skips[stage]
    if len(features) > 1:
        total += num_classes * skips[0]
    return int(total)
