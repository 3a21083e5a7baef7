"""Training: the step-based Trainer, its config, splits, losses and callbacks, and the deterministic data pipeline.

Example:
    >>> from nnseg.training import TrainingLoader
    >>> loader = TrainingLoader(store, case_ids, plans["3d_fullres"], ds.spec, seed=0, num_workers=2)
    >>> batch = next(iter(loader.iterate(start_step=0)))
"""

from nnseg._deprecation import moved_names
from nnseg.checkpoint import Checkpoint, TrainState
from nnseg.losses import DeepSupervisionLoss, DiceBCELoss, DiceCELoss, SoftDiceLoss, deep_supervision_weights
from nnseg.training._augment_device import CropFactory, DeviceAugmenter
from nnseg.training._augmentation import AugmentationConfig, augment_sample, deep_supervision_scales, make_targets
from nnseg.training._batches import Batch
from nnseg.training._callbacks import Callback, EarlyStopping, MetricsLog, ProgressBar, ProgressPlot
from nnseg.training._config import TrainerConfig
from nnseg.training._ddp import DistributedContext
from nnseg.training._loader import TrainingLoader, ValidationLoader
from nnseg.training._pretrained import load_pretrained_weights
from nnseg.training._sampling import PatchSampler
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
    "load_pretrained_weights",
    "write_splits_file",
    "AugmentationConfig",
    "Batch",
    "CropFactory",
    "DeviceAugmenter",
    "PatchSampler",
    "TrainingLoader",
    "ValidationLoader",
    "augment_sample",
    "deep_supervision_scales",
    "make_targets",
]

__getattr__ = moved_names(__name__, {
    "BatchFactory": "nnseg.training._batches",
    "CroppedBatch": "nnseg.training._augment_device",
    "LoaderError": "nnseg.errors",
    "SampledPatch": "nnseg.training._sampling",
    "check_training_cases": "nnseg.training._batches",
    "crop_and_pad": "nnseg.training._sampling",
    "initial_patch_size": "nnseg.training._augment_spatial",
    "iterate_batches": "nnseg.training._loader",
    "patch_bounds": "nnseg.training._sampling",
    "rank_batch_sizes": "nnseg.training._ddp",
    "rank_oversampling": "nnseg.training._ddp",
    "validate_cases": "nnseg.training._final_validation",
})  # fmt: skip
