"""Connected components: keep the largest component of a label, a region, or a union of them (pure functions).

Components use full connectivity (26 neighbours in 3D, 8 in 2D), the largest size is found over all components
of the mask, and every component of that size is kept (a tie keeps them all). Removed voxels become 0
(background), also for region-based label maps: nnU-Net does the same, which decides the voxels it writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from nnseg.evaluation._metrics import LabelOrRegion

__all__ = ["keep_largest_component", "keep_largest_component_of"]


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` that belong to a largest connected component (ties: all of them).

    Args:
        mask: Boolean array of any number of axes; singleton axes do not change the connectivity.

    Returns:
        A boolean array of the same shape, a subset of ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    structure = np.ones((3,) * mask.ndim, dtype=bool)  # full connectivity
    components, count = ndimage.label(mask, structure=structure)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    largest = np.flatnonzero(sizes == sizes.max())
    return np.isin(components, largest)


def _mask_of(segmentation: np.ndarray, labels: Sequence[LabelOrRegion]) -> np.ndarray:
    values: set[int] = set()
    for label in labels:
        values.update(label if isinstance(label, tuple) else (label,))
    return np.isin(segmentation, sorted(values))


def keep_largest_component_of(segmentation: np.ndarray, labels: Sequence[LabelOrRegion]) -> np.ndarray:
    """Keep only the largest connected component of the union of ``labels`` in a label map.

    Args:
        segmentation: Integer label map (any shape, e.g. ``(1, z, y, x)``); not modified.
        labels: Label values and / or regions (tuples of label values) whose union forms the mask.

    Returns:
        A copy of ``segmentation`` where the voxels of the mask outside its largest component(s) are 0.

    Example:
        >>> seg = np.array([[1, 0, 2, 2]])
        >>> keep_largest_component_of(seg, [2]).tolist()
        [[1, 0, 2, 2]]
        >>> keep_largest_component_of(seg, [1, 2]).tolist()
        [[0, 0, 2, 2]]
    """
    segmentation = np.asarray(segmentation)
    mask = _mask_of(segmentation, labels)
    result = segmentation.copy()
    result[mask & ~keep_largest_component(mask)] = 0
    return result
