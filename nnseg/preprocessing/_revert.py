"""Map arrays in the preprocessed grid back to the geometry of the source files.

Preprocessing runs transpose -> crop -> resample (normalisation does not move voxels); going back runs the
steps in reverse, using only the :class:`~nnseg.preprocessing._case.CaseProperties` of the case:

1. **resample** from ``shape_after_resampling`` to ``shape_after_cropping_and_before_resampling``, the
   current spacing being ``target_spacing`` and the new one the original spacing permuted by
   ``transpose_forward`` (the separate-z rule is decided from these two spacings);
2. **uncrop**: paste into an array of ``shape_before_cropping`` at ``bbox_used_for_cropping``, filling the
   rest with a constant;
3. **transpose back** with ``transpose_backward``.

:func:`revert_segmentation` does this for a label map (per-label resampling, ``-1`` becomes background),
:func:`logits_to_segmentation` for a network's class scores (resampled with order 1, then arg-max, as
nnU-Net exports predictions), :func:`revert_probabilities` for per-class probabilities (background is 1
outside the crop). The building blocks :func:`resample_to_cropped_shape` and
:func:`uncrop_and_transpose_back` are public for predictors with other needs (e.g. region-based labels).

Arrays are channel-first, ``(c, *spatial)``; results are in the array order of the source files
(``(c, z, y, x)``, 2-D files as ``(c, 1, y, x)``), ready for :func:`nnseg.io.write_segmentation` with
``properties.geometry``.
"""

from __future__ import annotations

import numpy as np

from nnseg._cropping import NONZERO_LABEL, bounding_box_to_slices
from nnseg.errors import ConfigError
from nnseg.preprocessing._case import CaseProperties
from nnseg.preprocessing._resampling import Resampler

__all__ = [
    "PROBABILITY_RESAMPLER",
    "SEGMENTATION_RESAMPLER",
    "logits_to_segmentation",
    "resample_to_cropped_shape",
    "revert_probabilities",
    "revert_segmentation",
    "uncrop_and_transpose_back",
]

PROBABILITY_RESAMPLER = Resampler(is_seg=False, order=1, order_z=0, force_separate_z=None)
"""nnU-Net's default ``resampling_fn_probabilities`` (order 1, order_z 0, separate-z by anisotropy)."""
SEGMENTATION_RESAMPLER = Resampler(is_seg=True, order=1, order_z=0, force_separate_z=None)
"""nnU-Net's default ``resampling_fn_seg`` (per-label order 1, order_z 0, separate-z by anisotropy)."""


def _check_channel_first(array: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected:
        raise ConfigError(
            f"{what}: expected a channel-first array (c, *spatial) with spatial shape {expected}; got shape "
            f"{array.shape}. Pass arrays in the grid of the case these properties belong to."
        )


def resample_to_cropped_shape(
    array: np.ndarray, properties: CaseProperties, resampler: Resampler = PROBABILITY_RESAMPLER
) -> np.ndarray:
    """Resample ``(c, *shape_after_resampling)`` to ``(c, *shape_after_cropping_and_before_resampling)``.

    Args:
        array: Channel-first array in the preprocessed grid (logits, probabilities or a label map).
        properties: The case's properties.
        resampler: How to interpolate; e.g. the plan's ``resampling_fn_probabilities`` or
            :data:`SEGMENTATION_RESAMPLER` for label maps.

    Returns:
        The resampled array (``array`` itself when the shapes already agree).

    Raises:
        ConfigError: If ``array`` is not in the preprocessed grid of ``properties``.
    """
    _check_channel_first(np.asarray(array), properties.shape_after_resampling, "resample_to_cropped_shape")
    original_spacing = tuple(properties.spacing[axis] for axis in properties.transpose_forward)
    return resampler(
        array, properties.shape_after_cropping_and_before_resampling, properties.target_spacing, original_spacing
    )


def uncrop_and_transpose_back(
    array: np.ndarray, properties: CaseProperties, fill: float | np.ndarray = 0
) -> np.ndarray:
    """Paste a cropped array into the full (transposed) grid, then undo the transposition.

    Args:
        array: ``(c, *shape_after_cropping_and_before_resampling)``.
        properties: The case's properties.
        fill: Value outside the crop box: a scalar, or one value per channel (shape ``(c,)``).

    Returns:
        ``(c, *original_shape)`` in the source files' array order, same dtype as ``array``.

    Raises:
        ConfigError: If ``array`` does not have the cropped shape.
    """
    array = np.asarray(array)
    _check_channel_first(array, properties.shape_after_cropping_and_before_resampling, "uncrop_and_transpose_back")
    fill_values = np.broadcast_to(np.asarray(fill, dtype=array.dtype), (array.shape[0],))
    full = np.empty((array.shape[0], *properties.shape_before_cropping), dtype=array.dtype)
    full[...] = fill_values.reshape(-1, *([1] * len(properties.shape_before_cropping)))
    full[(slice(None),) + bounding_box_to_slices(properties.bbox_used_for_cropping)] = array
    axes = (0, *(axis + 1 for axis in properties.transpose_backward))
    return np.ascontiguousarray(full.transpose(axes))


def revert_segmentation(
    seg: np.ndarray, properties: CaseProperties, *, resampler: Resampler = SEGMENTATION_RESAMPLER
) -> np.ndarray:
    """Map a label map from the preprocessed grid back onto the source image.

    ``-1`` (outside the nonzero region) becomes background ``0``, inside and outside the crop box.

    Args:
        seg: ``(1, *shape_after_resampling)`` label map (the preprocessed ``seg`` or a prediction).
        properties: The case's properties.
        resampler: How to resample labels; by default per label at order 1 with order_z 0.

    Returns:
        ``(1, z, y, x)`` label map in the source files' array order, with the dtype of ``seg``.

    Raises:
        ConfigError: If ``seg`` is not in the preprocessed grid, or ``resampler`` does not treat labels.

    Example:
        >>> case = Preprocessor(plan, spec).preprocess(images, spacing, seg=labels)
        >>> np.array_equal(revert_segmentation(case.seg, case.properties), labels)  # identity spacing
        True
    """
    if not resampler.is_seg:
        raise ConfigError(
            "revert_segmentation: the resampler must resample labels (is_seg=True), otherwise it would "
            "interpolate label values; use SEGMENTATION_RESAMPLER or the plan's resampling_fn_seg."
        )
    seg = np.asarray(seg)
    cropped = resample_to_cropped_shape(seg, properties, resampler)
    cropped = np.where(cropped == NONZERO_LABEL, 0, cropped).astype(seg.dtype, copy=False)
    return uncrop_and_transpose_back(cropped, properties, fill=0)


def logits_to_segmentation(
    logits: np.ndarray, properties: CaseProperties, *, resampler: Resampler = PROBABILITY_RESAMPLER
) -> np.ndarray:
    """Turn class scores in the preprocessed grid into a label map on the source image (nnU-Net's export).

    The scores are resampled (order 1 by default), the arg-max taken over classes (channel ``i`` is label
    ``i``), and the labels pasted into a background-filled array, which is transposed back.

    Args:
        logits: ``(num_classes, *shape_after_resampling)`` scores (logits or probabilities).
        properties: The case's properties.
        resampler: The plan's ``resampling_fn_probabilities`` (default: :data:`PROBABILITY_RESAMPLER`).

    Returns:
        ``(1, z, y, x)`` label map (uint8, uint16 from 256 classes on) in the source files' array order.

    Raises:
        ConfigError: If ``logits`` is not in the preprocessed grid of ``properties``.
    """
    scores = resample_to_cropped_shape(np.asarray(logits, dtype=np.float32), properties, resampler)
    dtype = np.uint8 if scores.shape[0] <= 255 else np.uint16
    labels = np.argmax(scores, axis=0).astype(dtype)[None]
    return uncrop_and_transpose_back(labels, properties, fill=0)


def revert_probabilities(
    probabilities: np.ndarray, properties: CaseProperties, *, resampler: Resampler = PROBABILITY_RESAMPLER
) -> np.ndarray:
    """Map per-class probabilities back onto the source image; outside the crop box background is certain.

    Args:
        probabilities: ``(num_classes, *shape_after_resampling)``, channel 0 being background.
        properties: The case's properties.
        resampler: The plan's ``resampling_fn_probabilities`` (default: :data:`PROBABILITY_RESAMPLER`).

    Returns:
        float32 ``(num_classes, z, y, x)`` in the source files' array order; outside the crop box channel 0
        is 1 and the others 0.

    Raises:
        ConfigError: If ``probabilities`` is not in the preprocessed grid of ``properties``.
    """
    resampled = resample_to_cropped_shape(np.asarray(probabilities, dtype=np.float32), properties, resampler)
    fill = np.zeros(resampled.shape[0], dtype=np.float32)
    fill[0] = 1.0
    return uncrop_and_transpose_back(resampled, properties, fill=fill)
