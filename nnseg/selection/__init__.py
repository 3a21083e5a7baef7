"""Choosing the final model: cross-validation results per run, ensembles of configurations, find-best.

Example:
    >>> from nnseg.selection import accumulate_crossval
    >>> cv = accumulate_crossval("work/runs/nnUNetPlans__3d_fullres__nnseg", "raw/Dataset001/labelsTr")
    >>> cv.score, cv.folder
"""

from nnseg.selection._crossval import CrossValidation, SelectionError, accumulate_crossval, crossval_folder_name

__all__ = ["CrossValidation", "SelectionError", "accumulate_crossval", "crossval_folder_name"]
