"""Training: the step-based Trainer, its config, splits, losses and callbacks, and the deterministic data pipeline.

Example:
    >>> from nnseg.training import TrainingLoader
    >>> loader = TrainingLoader(store, case_ids, plans["3d_fullres"], ds.spec, seed=0, num_workers=2)
    >>> batch = next(iter(loader.iterate(start_step=0)))
"""

from nnseg.checkpoint import Checkpoint, TrainState
from nnseg.losses import DeepSupervisionLoss, DiceBCELoss, DiceCELoss, SoftDiceLoss, deep_supervision_weights
from nnseg.training._augment_device import CropFactory, CroppedBatch, DeviceAugmenter
from nnseg.training._augment_spatial import initial_patch_size
from nnseg.training._augmentation import AugmentationConfig, augment_sample, deep_supervision_scales, make_targets
from nnseg.training._batches import Batch, BatchFactory, LoaderError, check_training_cases
from nnseg.training._callbacks import Callback, EarlyStopping, MetricsLog, ProgressBar, ProgressPlot
from nnseg.training._config import TrainerConfig
from nnseg.training._ddp import DistributedContext, rank_batch_sizes, rank_oversampling
from nnseg.training._final_validation import validate_cases
from nnseg.training._loader import TrainingLoader, ValidationLoader, iterate_batches
from nnseg.training._sampling import PatchSampler, SampledPatch, crop_and_pad, patch_bounds
from nnseg.training._split import Split, kfold_splits, write_splits_file
from nnseg.training._tensorboard import TensorBoardLogger
from nnseg.training._trainer import Trainer

__all__ = [
    "Callback",
    "Checkpoint",
    "DeepSupervisionLoss",
    "DistributedContext",
    "DiceBCELoss",
    "DiceCELoss",
    "EarlyStopping",
    "MetricsLog",
    "ProgressBar",
    "ProgressPlot",
    "SoftDiceLoss",
    "Split",
    "TrainState",
    "TensorBoardLogger",
    "Trainer",
    "TrainerConfig",
    "deep_supervision_weights",
    "kfold_splits",
    "rank_batch_sizes",
    "rank_oversampling",
    "validate_cases",
    "write_splits_file",
    "AugmentationConfig",
    "Batch",
    "BatchFactory",
    "CropFactory",
    "CroppedBatch",
    "DeviceAugmenter",
    "LoaderError",
    "PatchSampler",
    "SampledPatch",
    "TrainingLoader",
    "ValidationLoader",
    "augment_sample",
    "check_training_cases",
    "crop_and_pad",
    "deep_supervision_scales",
    "initial_patch_size",
    "iterate_batches",
    "make_targets",
    "patch_bounds",
]
