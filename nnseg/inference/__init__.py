"""Inference: sliding-window prediction, fold ensembles, export to the source geometry, sharded folder runs.

Example:
    >>> from nnseg.inference import Predictor
    >>> predictor = Predictor.from_nnunet_model_folder("results/Dataset001/nnUNetTrainer__nnUNetPlans__3d_fullres")
    >>> predictor.predict_folder("raw/imagesTs", "work/pred", shard=Shard(0, 4))
    >>> Predictor.status("work/pred").is_complete
"""

from nnseg.inference._export import ExportedPrediction, export_logits, paint_regions
from nnseg.inference._folder import list_input_cases, predict_folder
from nnseg.inference._model import TrainedModel, load_nnunet_checkpoint
from nnseg.inference._parts import (
    CasesFailedError,
    PartManifest,
    PartStatus,
    PredictionError,
    PredictionStatus,
    prediction_status,
)
from nnseg.inference._predictor import Predictor
from nnseg.inference._sliding_window import is_out_of_memory, mirror_axis_combinations, predict_logits, predict_tile
from nnseg.inference._tiling import gaussian_importance_map, padding_for_patch, tile_positions, tile_slices

__all__ = [
    "CasesFailedError",
    "ExportedPrediction",
    "PartManifest",
    "PartStatus",
    "PredictionError",
    "PredictionStatus",
    "Predictor",
    "TrainedModel",
    "export_logits",
    "gaussian_importance_map",
    "is_out_of_memory",
    "list_input_cases",
    "load_nnunet_checkpoint",
    "mirror_axis_combinations",
    "padding_for_patch",
    "paint_regions",
    "predict_folder",
    "predict_logits",
    "predict_tile",
    "prediction_status",
    "tile_positions",
    "tile_slices",
]
