"""Resampling images and label maps to a new shape, with nnU-Net v2's rules.

Rules (nnU-Net's ``resample_data_or_seg_to_shape``):

* **New shape**: ``round(old_spacing / new_spacing * old_shape)`` per axis (:func:`compute_new_shape`).
* **Same shape**: the input array is returned unchanged (not copied).
* **Separate z** (:func:`separate_z_axis`): if the current spacing is anisotropic (largest / smallest >
  3), the axis with the largest current spacing is resampled on its own; otherwise, if the *target*
  spacing is anisotropic, the target's largest axis; if two or three axes tie for the largest spacing,
  nothing is resampled separately. Then every slice across that axis is resized in-plane with ``order``,
  and the axis itself is interpolated with ``order_z`` (0: nearest neighbour) by
  :func:`scipy.ndimage.map_coordinates` in ``mode="nearest"`` at pixel-centre aligned positions.
* **Otherwise** the whole volume is resized with :func:`skimage.transform.resize` (``mode="edge"``,
  ``anti_aliasing=False``, clipped to the input range), computed in float64 and cast back.
* **Label maps** are resized per label: each label's indicator is interpolated with ``order`` and each
  voxel takes the label with the largest value, exact ties going to the nearest-neighbour label
  (batchgenerators' ``resize_segmentation``). ``-1`` (outside the nonzero region) is a label like any other.

Arrays are channel-first ``(c, z, y, x)``; spacings and shapes are spatial only, in the same axis order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from nnseg._suggest import unknown_name_hint
from nnseg.errors import ConfigError, PlansError

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "Resampler",
    "compute_new_shape",
    "resample_data",
    "resample_seg",
    "resampler_from_plan",
    "separate_z_axis",
]

ANISOTROPY_THRESHOLD = 3.0
"""Largest / smallest spacing above which one axis is resampled separately."""

SUPPORTED_FUNCTIONS = ("resample_data_or_seg_to_shape",)
"""Resampling function names (as plans store them) that nnseg implements."""


def compute_new_shape(
    shape: Sequence[int], current_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Return the spatial shape after resampling from ``current_spacing`` to ``new_spacing``.

    Each axis becomes ``round(current_spacing / new_spacing * shape)`` (Python rounding, half to even).

    Raises:
        ConfigError: If the three sequences differ in length.
    """
    if not len(shape) == len(current_spacing) == len(new_spacing):
        raise ConfigError(
            f"compute_new_shape: shape {list(shape)}, current_spacing {list(current_spacing)} and new_spacing "
            f"{list(new_spacing)} must have one entry per spatial axis each."
        )
    return tuple(
        int(round(float(old) / float(new) * int(size))) for old, new, size in zip(current_spacing, new_spacing, shape)
    )


def _largest_axis(spacing: Sequence[float]) -> int | None:
    """Return the axis with the largest spacing, or None when two or more axes tie for it."""
    values = np.asarray(spacing, dtype=float)
    candidates = np.flatnonzero(values.max() / values == 1)
    return int(candidates[0]) if len(candidates) == 1 else None


def _is_anisotropic(spacing: Sequence[float], threshold: float) -> bool:
    values = np.asarray(spacing, dtype=float)
    return bool(values.max() / values.min() > threshold)


def separate_z_axis(
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    force_separate_z: bool | None = None,
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
) -> int | None:
    """Return the axis to resample separately, or None for a joint 3-D resize.

    Args:
        current_spacing: Spacing of the input.
        new_spacing: Spacing of the output.
        force_separate_z: True: separate along the largest current spacing; False: never; None: decide by
            anisotropy (see the module docstring).
        anisotropy_threshold: Largest / smallest spacing above which a spacing counts as anisotropic.
    """
    if force_separate_z is False:
        return None
    if force_separate_z or _is_anisotropic(current_spacing, anisotropy_threshold):
        return _largest_axis(current_spacing)
    if _is_anisotropic(new_spacing, anisotropy_threshold):
        return _largest_axis(new_spacing)
    return None


def _resize_volume(volume: np.ndarray, new_shape: tuple[int, ...], order: int, is_seg: bool) -> np.ndarray:
    """Resize one float64 channel (any number of axes) with skimage (images) or per label (label maps)."""
    # imported here: they cost about a second of start-up (pandas via batchgenerators) in every worker
    # process, and cases already on the target grid never resample
    from batchgenerators.augmentations.utils import resize_segmentation
    from skimage.transform import resize

    if is_seg:
        return np.asarray(resize_segmentation(volume, new_shape, order))
    return np.asarray(resize(volume, new_shape, order, mode="edge", anti_aliasing=False))


def _axis_positions(old_size: int, new_size: int) -> np.ndarray:
    """Pixel-centre aligned source positions of the ``new_size`` output samples along one axis."""
    scale = float(old_size) / new_size
    return scale * (np.arange(new_size) + 0.5) - 0.5


def _interpolate_axis0(stack: np.ndarray, new_size: int, order_z: int, is_seg: bool) -> np.ndarray:
    """Resample axis 0 of a 3-D float64 stack whose other axes already have their final size."""
    positions = _axis_positions(stack.shape[0], new_size)
    if order_z == 0:
        # Nearest neighbour along one axis: map_coordinates' own rounding picks the source slices.
        index = map_coordinates(np.arange(stack.shape[0], dtype=float), positions[None], order=0, mode="nearest")
        return stack[index.astype(np.int64)]
    grid = np.meshgrid(positions, *(np.arange(n, dtype=float) for n in stack.shape[1:]), indexing="ij")
    coordinates = np.stack(grid)
    if not is_seg:
        return np.asarray(map_coordinates(stack, coordinates, order=order_z, mode="nearest"))
    result = np.zeros((new_size, *stack.shape[1:]), dtype=float)
    for label in np.unique(stack):
        indicator = map_coordinates((stack == label).astype(float), coordinates, order=order_z, mode="nearest")
        result[np.round(indicator) > 0.5] = label
    return result


def _resize_separate(
    volume: np.ndarray, new_shape: tuple[int, ...], axis: int, order: int, order_z: int, is_seg: bool
) -> np.ndarray:
    """Resize each slice across ``axis`` in-plane, then interpolate along ``axis``."""
    slices = np.moveaxis(volume, axis, 0)
    in_plane = tuple(size for i, size in enumerate(new_shape) if i != axis)
    stack = np.stack([_resize_volume(s, in_plane, order, is_seg) for s in slices]).astype(float, copy=False)
    if stack.shape[0] != new_shape[axis]:
        stack = _interpolate_axis0(stack, new_shape[axis], order_z, is_seg)
    return np.moveaxis(stack, 0, axis)


def _resample(
    array: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    is_seg: bool,
    order: int,
    order_z: int,
    force_separate_z: bool | None,
    anisotropy_threshold: float,
) -> np.ndarray:
    if array.ndim != 4 or len(new_shape) != 3:
        raise ConfigError(
            f"resampling expects a (c, z, y, x) array and a 3-axis new_shape; got array shape {array.shape} "
            f"and new_shape {list(new_shape)}. 2-D images are stored as (c, 1, y, x)."
        )
    target = tuple(int(v) for v in new_shape)
    if tuple(array.shape[1:]) == target:
        return array
    axis = separate_z_axis(
        current_spacing, new_spacing, force_separate_z=force_separate_z, anisotropy_threshold=anisotropy_threshold
    )
    result = np.empty((array.shape[0], *target), dtype=array.dtype)
    for channel in range(array.shape[0]):
        volume = array[channel].astype(float)
        if axis is None:
            result[channel] = _resize_volume(volume, target, order, is_seg)
        else:
            result[channel] = _resize_separate(volume, target, axis, order, order_z, is_seg)
    return result


def resample_data(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 3,
    order_z: int = 0,
    force_separate_z: bool | None = None,
    *,
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
) -> np.ndarray:
    """Resample an image ``(c, z, y, x)`` to ``new_shape`` (see the module docstring for the rules).

    Args:
        data: The image; the output has its dtype.
        new_shape: Spatial output shape, usually :func:`compute_new_shape`.
        current_spacing: Spacing of ``data``.
        new_spacing: Spacing of the output (only used to choose separate-z resampling).
        order: Spline order of the in-plane (or full 3-D) interpolation.
        order_z: Spline order along a separately resampled axis.
        force_separate_z: True / False force the choice; None decides from the spacings.
        anisotropy_threshold: See :func:`separate_z_axis`.

    Returns:
        The resampled array, or ``data`` itself when the shape does not change.

    Raises:
        ConfigError: If ``data`` is not 4-D or ``new_shape`` does not have 3 entries.
    """
    return _resample(
        data, new_shape, current_spacing, new_spacing, is_seg=False, order=order, order_z=order_z,
        force_separate_z=force_separate_z, anisotropy_threshold=anisotropy_threshold,
    )  # fmt: skip


def resample_seg(
    seg: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    new_spacing: Sequence[float],
    order: int = 1,
    order_z: int = 0,
    force_separate_z: bool | None = None,
    *,
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD,
) -> np.ndarray:
    """Resample a label map ``(1, z, y, x)`` to ``new_shape``; every output value is an input label.

    Arguments as in :func:`resample_data`; ``order`` applies to the per-label indicator maps (0 gives
    nearest neighbour). ``seg`` must have a signed dtype if it holds -1.

    Returns:
        The resampled label map (same dtype), or ``seg`` itself when the shape does not change.
    """
    return _resample(
        seg, new_shape, current_spacing, new_spacing, is_seg=True, order=order, order_z=order_z,
        force_separate_z=force_separate_z, anisotropy_threshold=anisotropy_threshold,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resampler:
    """A resampling function with its plan keyword arguments bound.

    Args:
        is_seg: Resample as a label map.
        order: Spline order in-plane / in 3-D.
        order_z: Spline order along a separately resampled axis.
        force_separate_z: See :func:`separate_z_axis`.
        anisotropy_threshold: See :func:`separate_z_axis`.
    """

    is_seg: bool = False
    order: int = 3
    order_z: int = 0
    force_separate_z: bool | None = None
    anisotropy_threshold: float = ANISOTROPY_THRESHOLD

    def __call__(
        self,
        array: np.ndarray,
        new_shape: Sequence[int],
        current_spacing: Sequence[float],
        new_spacing: Sequence[float],
    ) -> np.ndarray:
        """Resample ``array`` to ``new_shape``."""
        function: Callable[..., np.ndarray] = resample_seg if self.is_seg else resample_data
        return function(
            array, new_shape, current_spacing, new_spacing, self.order, self.order_z, self.force_separate_z,
            anisotropy_threshold=self.anisotropy_threshold,
        )  # fmt: skip


_KWARG_NAMES = {"is_seg", "order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold"}


def resampler_from_plan(name: str, kwargs: Mapping[str, Any], *, where: str = "plans") -> Resampler:
    """Build a :class:`Resampler` from a plan's ``resampling_fn_*`` name and keyword arguments.

    Args:
        name: Function name, e.g. ``"resample_data_or_seg_to_shape"``.
        kwargs: Its keyword arguments (``is_seg``, ``order``, ``order_z``, ``force_separate_z``,
            optionally ``separate_z_anisotropy_threshold``).
        where: Description of the source for error messages.

    Raises:
        PlansError: If the function or one of its arguments is unknown.
    """
    if name not in SUPPORTED_FUNCTIONS:
        raise PlansError(
            f"{where}: resampling function {name!r} is not supported by nnseg. "
            f"{unknown_name_hint(name, SUPPORTED_FUNCTIONS)}"
        )
    unknown = sorted(set(kwargs) - _KWARG_NAMES)
    if unknown:
        raise PlansError(
            f"{where}: unknown keyword argument(s) {unknown} for {name!r}; expected some of {sorted(_KWARG_NAMES)}."
        )
    force = kwargs.get("force_separate_z")
    return Resampler(
        is_seg=bool(kwargs.get("is_seg", False)),
        order=int(kwargs.get("order", 3)),
        order_z=int(kwargs.get("order_z", 0)),
        force_separate_z=None if force is None else bool(force),
        anisotropy_threshold=float(kwargs.get("separate_z_anisotropy_threshold", ANISOTROPY_THRESHOLD)),
    )
