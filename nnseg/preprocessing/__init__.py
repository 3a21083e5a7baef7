"""Preprocessing: the pure per-case steps (crop to nonzero, normalise, resample) and their runner.

Example:
    >>> from nnseg.preprocessing import crop_to_nonzero
    >>> cropped, seg, bbox = crop_to_nonzero(images, seg)   # seg: -1 outside the nonzero region
"""

from nnseg.preprocessing._cropping import (
    NONZERO_LABEL,
    bounding_box_of_mask,
    bounding_box_to_slices,
    crop_to_nonzero,
    nonzero_mask,
)

__all__ = ["NONZERO_LABEL", "bounding_box_of_mask", "bounding_box_to_slices", "crop_to_nonzero", "nonzero_mask"]
