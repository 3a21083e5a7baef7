"""Helpers of the inference tests: tiny nnU-Net v2 model folders, nnseg run folders and input images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from nnseg._train_state import TrainState
from nnseg.checkpoint import Checkpoint
from nnseg.dataset import DatasetSpec
from nnseg.network import build_network
from nnseg.planning import Plans

LABELS = {"background": 0, "liver": 1, "tumour": 2}
REGION_LABELS = {"background": 0, "whole": [1, 2], "core": 2}
INTENSITY = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -3.0, "max": 3.0,
             "percentile_99_5": 2.5, "percentile_00_5": -2.5}  # fmt: skip


def plans_dict(*, patch: Sequence[int] = (8, 16, 16), spacing: Sequence[float] = (2.0, 1.0, 1.0),
               transpose: Sequence[int] = (0, 1, 2), stages: int = 2) -> dict[str, Any]:  # fmt: skip
    """nnU-Net v2 plans.json content with one tiny configuration (PlainConvUNet, instance norm)."""
    ndim = len(patch)
    name = "2d" if ndim == 2 else "3d_fullres"
    conv, norm = ("Conv3d", "InstanceNorm3d") if ndim == 3 else ("Conv2d", "InstanceNorm2d")
    strides = [[1] * ndim] + [[2] * ndim] * (stages - 1)
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    configuration = {
        "data_identifier": f"nnUNetPlans_{name}", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": list(patch), "median_image_size_in_voxels": [20.0] * ndim, "spacing": list(spacing)[-ndim:],
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": {"n_stages": stages, "features_per_stage": [4, 8, 8, 8][:stages],
                                         "conv_op": f"torch.nn.modules.conv.{conv}",
                                         "kernel_sizes": [[3] * ndim] * stages, "strides": strides,
                                         "n_conv_per_stage": [1] * stages, "n_conv_per_stage_decoder": [1] * (stages - 1),
                                         "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.{norm}",
                                         "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                                         "dropout_op": None, "dropout_op_kwargs": None,
                                         "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
        "batch_dice": False,
    }  # fmt: skip
    return {
        "dataset_name": "Dataset001_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [2.0, 1.0, 1.0], "original_median_shape_after_transp": [10, 20, 20],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": list(transpose),
        "transpose_backward": [int(i) for i in np.argsort(transpose)], "configurations": {name: configuration},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    }  # fmt: skip


def dataset_dict(labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """dataset.json content: one channel, ``labels`` (default background/liver/tumour)."""
    labels = labels or LABELS
    data: dict[str, Any] = {"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": 4, "file_ending": ".nii.gz"}
    if any(isinstance(v, list) for v in labels.values()):
        data["regions_class_order"] = [1, 2]
    return data


def random_weights(plans: dict[str, Any], dataset: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """He-initialised weights of the plans' network, with some bias so that every label appears."""
    name = next(iter(plans["configurations"]))
    plan = Plans.from_json(plans)[name]
    spec = DatasetSpec.from_dict(dataset)
    torch.manual_seed(seed)
    network = build_network(plan.architecture, num_input_channels=1, num_outputs=spec.num_segmentation_heads,
                            deep_supervision=False)  # fmt: skip
    state = {k: v.clone() for k, v in network.state_dict().items()}
    for key in state:
        if "seg_layers" in key:  # larger logits, so that random weights predict every label somewhere
            state[key] = torch.randn(state[key].shape) * (2.0 if key.endswith("weight") else 0.0)
    return state


def make_nnunet_model_folder(root: Path, *, folds: Sequence[int] = (0,), labels: dict[str, Any] | None = None,
                             seed: int = 0, **plan_options: Any) -> Path:  # fmt: skip
    """An nnU-Net v2 trained model folder with random weights in nnU-Net's checkpoint format."""
    plans, dataset = plans_dict(**plan_options), dataset_dict(labels)
    root.mkdir(parents=True, exist_ok=True)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    configuration = next(iter(plans["configurations"]))
    ndim = len(plans["configurations"][configuration]["patch_size"])
    for fold in folds:
        checkpoint = {
            "network_weights": random_weights(plans, dataset, seed + fold), "optimizer_state": {},
            "grad_scaler_state": None, "_best_ema": np.float64(0.5), "current_epoch": 1,
            "logging": {"mean_fg_dice": [np.float64(0.25)], "ema_fg_dice": [np.float64(0.25)],
                        "train_losses": [np.float32(1.0)], "lrs": [0.01]},
            "init_args": {"plans": plans, "configuration": configuration, "fold": fold, "dataset_json": dataset,
                          "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": tuple(range(ndim)),
        }  # fmt: skip
        (root / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, root / f"fold_{fold}" / "checkpoint_final.pth")
    return root


def make_nnseg_run(root: Path, *, seed: int = 0, labels: dict[str, Any] | None = None, **plan_options: Any) -> Path:
    """An nnseg run folder holding only ``checkpoint_final.pt`` (what prediction reads)."""
    plans, dataset = plans_dict(**plan_options), dataset_dict(labels)
    name = next(iter(plans["configurations"]))
    plan = Plans.from_json(plans)[name]
    Checkpoint(
        random_weights(plans, dataset, seed), train_state=TrainState(step=10), plan=plan.to_json(standalone=True),
        plan_name=name, dataset_spec=DatasetSpec.from_dict(dataset).to_dict(), config={}, split={},
    ).save(root / "checkpoint_final.pt")  # fmt: skip
    return root


def write_images(folder: Path, num_cases: int = 3, *, shape: Sequence[int] = (9, 21, 19), seed: int = 0,
                 two_d: bool = False) -> list[str]:  # fmt: skip
    """Input images ``case_<i>_0000.nii.gz`` with a zero border (so cropping matters) and a non-trivial geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = []
    for index in range(num_cases):
        size = tuple(s + index for s in shape)
        array = rng.normal(size=size).astype(np.float32) + 2
        array[:, :1] = 0
        array[:, :, -2:] = 0
        image = sitk.GetImageFromArray(array[0] if two_d else array)
        image.SetSpacing((1.0, 1.0) if two_d else (1.0, 1.0, 2.5))
        image.SetOrigin((3.0, -2.0) if two_d else (3.0, -2.0, 7.5))
        if not two_d:
            image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
        sitk.WriteImage(image, str(folder / f"case_{index}_0000.nii.gz"))
        ids.append(f"case_{index}")
    return ids
