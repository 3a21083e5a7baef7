"""Preprocessing: the pure per-case steps (crop to nonzero, normalise, resample), the store and the runner.

Example:
    >>> from nnseg.preprocessing import crop_to_nonzero, preprocess_dataset
    >>> cropped, seg, bbox = crop_to_nonzero(images, seg)   # seg: -1 outside the nonzero region
    >>> store = preprocess_dataset(dataset, plans["3d_fullres"], "work/preprocessed/3d_fullres", num_workers=4)
"""

from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._cropping import (
    NONZERO_LABEL,
    bounding_box_of_mask,
    bounding_box_to_slices,
    crop_to_nonzero,
    nonzero_mask,
)
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._revert import (
    PROBABILITY_RESAMPLER,
    SEGMENTATION_RESAMPLER,
    logits_to_segmentation,
    resample_to_cropped_shape,
    revert_probabilities,
    revert_segmentation,
    uncrop_and_transpose_back,
)
from nnseg.preprocessing._run import PreprocessingError, preprocess_dataset
from nnseg.preprocessing._store import PreprocessedStore, StoreManifest, StoreStatus, store_fields, store_name

__all__ = [
    "NONZERO_LABEL",
    "PROBABILITY_RESAMPLER",
    "SEGMENTATION_RESAMPLER",
    "CaseProperties",
    "PreprocessedCase",
    "Preprocessor",
    "logits_to_segmentation",
    "resample_to_cropped_shape",
    "revert_probabilities",
    "revert_segmentation",
    "uncrop_and_transpose_back",
    "PreprocessedStore",
    "PreprocessingError",
    "StoreManifest",
    "StoreStatus",
    "bounding_box_of_mask",
    "bounding_box_to_slices",
    "crop_to_nonzero",
    "nonzero_mask",
    "preprocess_dataset",
    "store_fields",
    "store_name",
]
