"""Choosing the final model: cross-validation results per run, ensembles of configurations, find-best.

Example:
    >>> from nnseg.selection import accumulate_crossval
    >>> cv = accumulate_crossval("work/runs/nnUNetPlans__3d_fullres__nnseg", "raw/Dataset001/labelsTr")
    >>> cv.score, cv.folder
    >>> best = find_best("work", ["2d", "3d_fullres"])
    >>> print("\n".join(best.table()))
"""

from nnseg.selection._crossval import CrossValidation, SelectionError, accumulate_crossval, crossval_folder_name
from nnseg.selection._find_best import BestConfiguration, Candidate, choose_best, find_best

__all__ = [
    "BestConfiguration",
    "Candidate",
    "CrossValidation",
    "SelectionError",
    "accumulate_crossval",
    "choose_best",
    "crossval_folder_name",
    "find_best",
]
