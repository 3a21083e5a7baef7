"""Target spacing, anisotropy, transposition and resampled shapes, as nnU-Net v2 decides them.

Pure functions on plain sequences. Spacings and shapes are per case in array axis order (untransposed)
unless a name says otherwise. Medians follow NumPy exactly as nnU-Net uses it: the target spacing and
the anisotropy test use ``np.percentile(..., 50)``, the reported median spacing and the median shapes use
``np.median`` (the two can differ in the last bit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "lowres_spacing_step",
    "median_resampled_shape",
    "median_shape",
    "median_spacing",
    "resampled_shape",
    "target_spacing",
    "transpose_axes",
]


def median_spacing(spacings: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Return the per-axis median spacing over cases (``np.median``)."""
    return tuple(float(v) for v in np.median(np.asarray(spacings, dtype=np.float64), axis=0))


def median_shape(shapes: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Return the per-axis median shape over cases (``np.median``; may be fractional)."""
    return tuple(float(v) for v in np.median(np.asarray(shapes, dtype=np.float64), axis=0))


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], anisotropy_threshold: float = 3
) -> tuple[float, ...]:
    """Return the full-resolution target spacing (untransposed), with nnU-Net's anisotropy rule.

    The target is the per-axis median spacing. If the coarsest axis is more than ``anisotropy_threshold``
    times coarser than every other axis *and* the median image has more than ``anisotropy_threshold``
    times fewer voxels along it than along every other axis, that axis gets the 10th percentile of its
    spacings instead, but never finer than the coarsest other median spacing (plus 1e-5).

    Args:
        spacings: Spacing of every case.
        shapes: Shape of every case after cropping.
        anisotropy_threshold: nnU-Net's ``ANISO_THRESHOLD`` (3).
    """
    spacing_array = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacing_array, 50, axis=0)
    sizes = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if not others:
        return tuple(float(v) for v in target)
    anisotropic_spacing = target[worst] > anisotropy_threshold * max(target[others])
    few_voxels = sizes[worst] * anisotropy_threshold < min(sizes[others])
    if anisotropic_spacing and few_voxels:
        coarse = np.percentile(spacing_array[:, worst], 10)
        floor = max(target[others])
        target[worst] = floor + 1e-5 if coarse < floor else coarse
    return tuple(float(v) for v in target)


def transpose_axes(spacing: Sequence[float], *, suppress: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return ``(transpose_forward, transpose_backward)``: the coarsest axis first, the others in order.

    Args:
        spacing: Target spacing (untransposed).
        suppress: Keep the identity (nnU-Net's ``suppress_transpose``).
    """
    ndim = len(spacing)
    if suppress:
        forward = list(range(ndim))
    else:
        first = int(np.argmax(spacing))
        forward = [first] + [a for a in range(ndim) if a != first]
    backward = [forward.index(a) for a in range(ndim)]
    return tuple(forward), tuple(backward)


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[int, ...]:
    """Return the shape of an image of ``shape`` at ``spacing`` after resampling to ``new_spacing``.

    ``round(spacing / new_spacing * shape)`` per axis, rounding half to even.
    """
    ratio = np.asarray(spacing, dtype=np.float64) / np.asarray(new_spacing, dtype=np.float64)
    return tuple(int(v) for v in np.round(ratio * np.asarray(shape, dtype=np.float64)))


def median_resampled_shape(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], new_spacing: Sequence[float]
) -> tuple[float, ...]:
    """Return the per-axis median over cases of :func:`resampled_shape` (untransposed, may be fractional)."""
    return median_shape([resampled_shape(sh, sp, new_spacing) for sh, sp in zip(shapes, spacings)])


def lowres_spacing_step(spacing: np.ndarray, factor: float = 1.03) -> np.ndarray:
    """Return the next, coarser, low-resolution spacing candidate (a new array).

    Axes more than twice finer than the coarsest axis are multiplied by ``factor``; if there are none,
    every axis is.
    """
    spacing = np.array(spacing, dtype=np.float64)
    fine = spacing.max() / spacing > 2
    if fine.any():
        spacing[fine] *= factor
    else:
        spacing *= factor
    return spacing
