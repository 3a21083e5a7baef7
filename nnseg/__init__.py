"""nnseg: an nnU-Net v2 style segmentation pipeline as a library.

``import nnseg`` is cheap and has no side effects: the public names below are imported on first use
(PEP 562), so torch, SimpleITK and friends load only when a stage that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nnseg._version import __version__

if TYPE_CHECKING:
    from nnseg.dataset import Case, DatasetSpec, RawDataset
    from nnseg.errors import NnsegError
    from nnseg.evaluation import evaluate_folder
    from nnseg.fingerprint import Fingerprint, extract_fingerprint
    from nnseg.inference import Predictor
    from nnseg.planning import (
        ConfigurationPlan,
        Planner,
        Plans,
        ResEncLPlanner,
        ResEncMPlanner,
        ResEncXLPlanner,
    )
    from nnseg.preprocessing import PreprocessedStore, Preprocessor, preprocess_dataset
    from nnseg.sharding import Shard
    from nnseg.training import Split, Trainer, TrainerConfig

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Case": "nnseg.dataset",
    "DatasetSpec": "nnseg.dataset",
    "RawDataset": "nnseg.dataset",
    "NnsegError": "nnseg.errors",
    "Fingerprint": "nnseg.fingerprint",
    "extract_fingerprint": "nnseg.fingerprint",
    "ConfigurationPlan": "nnseg.planning",
    "Planner": "nnseg.planning",
    "Plans": "nnseg.planning",
    "ResEncLPlanner": "nnseg.planning",
    "ResEncMPlanner": "nnseg.planning",
    "ResEncXLPlanner": "nnseg.planning",
    "Shard": "nnseg.sharding",
    "PreprocessedStore": "nnseg.preprocessing",
    "Preprocessor": "nnseg.preprocessing",
    "preprocess_dataset": "nnseg.preprocessing",
    "Split": "nnseg.training",
    "Trainer": "nnseg.training",
    "TrainerConfig": "nnseg.training",
    "Predictor": "nnseg.inference",
    "evaluate_folder": "nnseg.evaluation",
}

__all__ = [
    "Case",
    "ConfigurationPlan",
    "DatasetSpec",
    "Fingerprint",
    "NnsegError",
    "Planner",
    "Plans",
    "RawDataset",
    "ResEncLPlanner",
    "ResEncMPlanner",
    "ResEncXLPlanner",
    "PreprocessedStore",
    "Preprocessor",
    "Shard",
    "Split",
    "Trainer",
    "TrainerConfig",
    "Predictor",
    "evaluate_folder",
    "__version__",
    "extract_fingerprint",
    "preprocess_dataset",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'nnseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
