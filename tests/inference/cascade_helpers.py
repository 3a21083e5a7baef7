"""Tiny nnU-Net v2 cascade model folders (3d_lowres + 3d_cascade_fullres, random weights) for the cascade tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from inference_helpers import dataset_dict, plans_dict

from nnseg.dataset import DatasetSpec
from nnseg.network import build_network
from nnseg.planning import Plans

LOWRES_SPACING = [4.0, 2.0, 2.0]


def cascade_plans(*, lowres_plans_name: str = "nnUNetPlans") -> tuple[dict[str, Any], dict[str, Any]]:
    """Plans with 3d_fullres, 3d_lowres (next_stage) and 3d_cascade_fullres; the lowres folder's own copy."""
    plans = plans_dict()
    fullres = plans["configurations"]["3d_fullres"]
    lowres = {**copy.deepcopy(fullres), "data_identifier": "nnUNetPlans_3d_lowres", "spacing": LOWRES_SPACING,
              "next_stage": "3d_cascade_fullres"}  # fmt: skip
    plans["configurations"]["3d_lowres"] = lowres
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    lowres_copy = {**copy.deepcopy(plans), "plans_name": lowres_plans_name}
    return plans, lowres_copy


def _weights(plans: dict[str, Any], dataset: dict[str, Any], configuration: str, seed: int) -> dict[str, torch.Tensor]:
    plan = Plans.from_json(plans)[configuration]
    spec = DatasetSpec.from_dict(dataset)
    channels = spec.num_channels + (len(spec.foreground_labels) if plan.previous_stage else 0)
    torch.manual_seed(seed)
    network = build_network(plan.architecture, num_input_channels=channels, num_outputs=spec.num_segmentation_heads,
                            deep_supervision=False)  # fmt: skip
    state = {k: v.clone() for k, v in network.state_dict().items()}
    for key in state:
        if "seg_layers" in key:  # large logits (few near-ties, like a trained network), every label somewhere
            state[key] = torch.randn(state[key].shape) * (8.0 if key.endswith("weight") else 0.0)
    first = "encoder.stages.0.0.convs.0.conv.weight"
    if plan.previous_stage and first in state:  # make the one-hot channels matter
        state[first][:, spec.num_channels :] *= 4.0
    return state


def write_model_folder(root: Path, plans: dict[str, Any], dataset: dict[str, Any], configuration: str, *,
                       folds: tuple[int, ...] = (0,), seed: int = 0) -> Path:  # fmt: skip
    """One nnU-Net v2 trained model folder of ``configuration`` with random weights in nnU-Net's checkpoint format."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plans.json").write_text(json.dumps(plans, indent=2))
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    for fold in folds:
        checkpoint = {
            "network_weights": _weights(plans, dataset, configuration, seed + fold), "optimizer_state": {},
            "grad_scaler_state": None, "_best_ema": np.float64(0.5), "current_epoch": 1,
            "logging": {"mean_fg_dice": [np.float64(0.25)], "ema_fg_dice": [np.float64(0.25)],
                        "train_losses": [np.float32(1.0)], "lrs": [0.01]},
            "init_args": {"plans": plans, "configuration": configuration, "fold": fold, "dataset_json": dataset,
                          "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
        }  # fmt: skip
        (root / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, root / f"fold_{fold}" / "checkpoint_final.pth")
    return root


def make_nnunet_cascade(results: Path, *, labels: dict[str, Any] | None = None, seed: int = 0,
                        lowres_plans_name: str = "nnUNetPlans", with_lowres: bool = True) -> tuple[Path, Path]:  # fmt: skip
    """``<results>/nnUNetTrainer__nnUNetPlans__3d_cascade_fullres`` and its ``__3d_lowres`` sibling."""
    plans, lowres_plans = cascade_plans(lowres_plans_name=lowres_plans_name)
    dataset = dataset_dict(labels)
    cascade = write_model_folder(results / "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres", plans, dataset,
                                 "3d_cascade_fullres", seed=seed)  # fmt: skip
    lowres = results / "nnUNetTrainer__nnUNetPlans__3d_lowres"  # the sibling, whatever plans it was trained with
    if with_lowres:
        write_model_folder(lowres, lowres_plans, dataset, "3d_lowres", seed=seed + 10)
    return cascade, lowres


def make_nnseg_cascade_runs(runs: Path, *, seed: int = 0, run: str = "default", folds: tuple[int, ...] = (0,),
                            with_lowres: bool = True) -> tuple[Path, Path]:  # fmt: skip
    """``runs/nnUNetPlans__3d_cascade_fullres__<run>/fold_<k>`` and the lowres twin, each with ``checkpoint_final.pt``."""
    from nnseg._train_state import TrainState
    from nnseg.checkpoint import Checkpoint

    plans_json, _ = cascade_plans()
    plans, dataset = Plans.from_json(plans_json), dataset_dict()
    roots = {name: runs / f"nnUNetPlans__{name}__{run}" for name in ("3d_cascade_fullres", "3d_lowres")}
    for name, root in roots.items():
        if name == "3d_lowres" and not with_lowres:
            continue
        for fold in folds:
            Checkpoint(
                _weights(plans_json, dataset, name, seed + fold + (10 if name == "3d_lowres" else 0)),
                train_state=TrainState(step=10), plan=plans[name].to_json(standalone=True), plan_name=name,
                dataset_spec=DatasetSpec.from_dict(dataset).to_dict(), config={}, split={},
            ).save(root / f"fold_{fold}" / "checkpoint_final.pt")  # fmt: skip
    return roots["3d_cascade_fullres"], roots["3d_lowres"]
