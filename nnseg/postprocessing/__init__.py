"""Postprocessing: keep-largest-connected-component steps decided on cross-validation (nnU-Net's rule), as JSON.

Example:
    >>> from nnseg.postprocessing import Postprocessing
    >>> pp = Postprocessing.determine("work/crossval", "raw/labelsTr", spec, "work/crossval_postprocessed")
    >>> pp.save("work/postprocessing.json")
    >>> cleaned = Postprocessing.load("work/postprocessing.json").apply(segmentation)
"""

from nnseg.errors import PostprocessingError
from nnseg.postprocessing._components import keep_largest_component, keep_largest_component_of
from nnseg.postprocessing._determine import apply_postprocessing_folder
from nnseg.postprocessing._postprocessing import Postprocessing, determine_postprocessing
from nnseg.postprocessing._steps import PostprocessingStep, Trial

__all__ = [
    "Postprocessing",
    "PostprocessingError",
    "PostprocessingStep",
    "Trial",
    "apply_postprocessing_folder",
    "determine_postprocessing",
    "keep_largest_component",
    "keep_largest_component_of",
]
