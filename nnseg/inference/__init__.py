"""Inference: sliding-window prediction, fold ensembles, export to the source geometry, sharded folder runs.

Example:
    >>> from nnseg.inference import InferenceSettings, Predictor
    >>> settings = InferenceSettings(device="cuda:0", tile_step_size=0.5)
    >>> predictor = Predictor.from_nnunet_model_folder("results/Dataset001/nnUNetTrainer__nnUNetPlans__3d_fullres",
    ...                                                settings=settings)
    >>> predictor.predict_folder("raw/imagesTs", "work/pred", shard=Shard(0, 4))
    >>> Predictor.status("work/pred").is_complete
"""

import importlib
import warnings
from typing import Any

from nnseg.inference._accumulate import (
    Accumulator,
    ConstantAccumulator,
    Float16GaussianAccumulator,
    GaussianAccumulator,
    WeightedAccumulator,
)
from nnseg.inference._export import ExportedPrediction, export_logits
from nnseg.inference._folder import list_input_cases
from nnseg.inference._model import TrainedModel
from nnseg.inference._parts import CasesFailedError, PartStatus, PredictionError, PredictionStatus, prediction_status
from nnseg.inference._predictor import Predictor
from nnseg.inference._settings import InferenceSettings
from nnseg.inference._sliding_window import predict_logits

__all__ = [
    "Accumulator",
    "CasesFailedError",
    "ConstantAccumulator",
    "ExportedPrediction",
    "Float16GaussianAccumulator",
    "GaussianAccumulator",
    "InferenceSettings",
    "PartStatus",
    "PredictionError",
    "PredictionStatus",
    "Predictor",
    "TrainedModel",
    "WeightedAccumulator",
    "export_logits",
    "list_input_cases",
    "predict_logits",
    "prediction_status",
]

# Names this package exported before; still importable for one release, with a DeprecationWarning.
_MOVED = {
    "PartManifest": ("nnseg.inference._parts", "nnseg.inference._parts.PartManifest (internal)"),
    "gaussian_importance_map": ("nnseg.inference._tiling", "GaussianAccumulator, or nnseg.inference._tiling"),
    "is_out_of_memory": ("nnseg.inference._sliding_window", "nnseg.inference._sliding_window.is_out_of_memory"),
    "load_nnunet_checkpoint": ("nnseg.inference._model", "TrainedModel.from_nnunet_model_folder"),
    "mirror_axis_combinations": ("nnseg.inference._sliding_window", "nnseg.inference._sliding_window"),
    "padding_for_patch": ("nnseg.inference._tiling", "nnseg.inference._tiling.padding_for_patch"),
    "paint_regions": ("nnseg.inference._export", "export_logits (paints regions itself)"),
    "predict_folder": ("nnseg.inference._folder", "Predictor.predict_folder"),
    "predict_tile": ("nnseg.inference._sliding_window", "predict_logits"),
    "tile_positions": ("nnseg.inference._tiling", "nnseg.inference._tiling.tile_positions"),
    "tile_slices": ("nnseg.inference._tiling", "nnseg.inference._tiling.tile_slices"),
}


def __getattr__(name: str) -> Any:
    """Old names of this package, with a DeprecationWarning naming what to use instead."""
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, replacement = _MOVED[name]
    warnings.warn(f"nnseg.inference.{name} is deprecated and will be removed from nnseg.inference in the next "
                  f"release; use {replacement}.", DeprecationWarning, stacklevel=2)  # fmt: skip
    return getattr(importlib.import_module(module), name)
