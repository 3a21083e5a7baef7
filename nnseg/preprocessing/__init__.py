"""Preprocessing: the pure per-case steps (crop to nonzero, normalise, resample), the store and the runner.

Example:
    >>> from nnseg.preprocessing import crop_to_nonzero, preprocess_dataset
    >>> cropped, seg, bbox = crop_to_nonzero(images, seg)   # seg: -1 outside the nonzero region
    >>> store = preprocess_dataset(dataset, plans["3d_fullres"], "work/preprocessed/3d_fullres", num_workers=4)
"""

from nnseg._cropping import crop_to_nonzero
from nnseg._deprecation import moved_names
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._revert import (
    PROBABILITY_RESAMPLER,
    logits_to_segmentation,
    resample_to_cropped_shape,
    revert_probabilities,
    revert_segmentation,
    uncrop_and_transpose_back,
)
from nnseg.preprocessing._run import preprocess_dataset
from nnseg.preprocessing._store import PreprocessedStore, StoreManifest, StoreStatus, store_name

__all__ = [
    "PROBABILITY_RESAMPLER",
    "CaseProperties",
    "PreprocessedCase",
    "PreprocessedStore",
    "Preprocessor",
    "StoreManifest",
    "StoreStatus",
    "crop_to_nonzero",
    "logits_to_segmentation",
    "preprocess_dataset",
    "resample_to_cropped_shape",
    "revert_probabilities",
    "revert_segmentation",
    "store_name",
    "uncrop_and_transpose_back",
]

__getattr__ = moved_names(__name__, {
    "NONZERO_LABEL": "nnseg._cropping",
    "PreprocessingError": "nnseg.errors",
    "SEGMENTATION_RESAMPLER": "nnseg.preprocessing._revert",
    "bounding_box_of_mask": "nnseg._cropping",
    "bounding_box_to_slices": "nnseg._cropping",
    "nonzero_mask": "nnseg._cropping",
    "store_fields": "nnseg.preprocessing._store",
})  # fmt: skip
