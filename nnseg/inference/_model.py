"""Load trained weights for prediction: nnseg run folders and nnU-Net v2 trained model folders.

Both give a :class:`TrainedModel`: the configuration plan, the dataset's labels, one weight dict per fold,
and the mirror axes for test-time augmentation. Nothing pickled is executed: nnseg checkpoints load with
``weights_only=True``; nnU-Net's ``.pth`` files do too, with the few NumPy scalar types nnU-Net stores in its
training log allowed explicitly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nnseg._hashing import content_hash, state_dict_digest
from nnseg.checkpoint import Checkpoint, load_weights_only, strip_wrapper_prefixes
from nnseg.dataset import DatasetSpec
from nnseg.errors import CheckpointError, NnsegError
from nnseg.inference._previous_stage import cascade_input_channels
from nnseg.network import build_network
from nnseg.planning import ConfigurationPlan, Plans

__all__ = ["RUN_CHECKPOINTS", "TrainedModel", "default_mirror_axes", "load_nnunet_checkpoint"]

RUN_CHECKPOINTS = ("final", "best", "latest")
"""Checkpoint names of an nnseg run folder (``checkpoint_<name>.pt``)."""
_FOLD_DIR = re.compile(r"fold_(\d+|all)")


def default_mirror_axes(plan: ConfigurationPlan) -> tuple[int, ...]:
    """nnU-Net's test-time mirror axes: every spatial axis of the patch."""
    return tuple(range(plan.ndim))


def load_nnunet_checkpoint(path: Path) -> dict[str, Any]:
    """Load an nnU-Net v2 ``checkpoint_*.pth`` without executing pickled code.

    Raises:
        CheckpointError: If the file is missing, damaged, or holds objects a safe load refuses.
    """
    if not path.is_file():
        raise CheckpointError(f"nnU-Net checkpoint {path} does not exist.")
    content = load_weights_only(path, describe="nnU-Net checkpoint", fix=(
        "it is damaged, or holds objects other than tensors, plain values and NumPy scalars. Re-export it, or "
        "load weights yourself."))  # fmt: skip
    if not isinstance(content, dict) or "network_weights" not in content:
        raise CheckpointError(f"{path} is not an nnU-Net checkpoint (no 'network_weights').")
    return content


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """Everything needed to predict: plan, labels, fold weights and mirror axes.

    Args:
        plan: The configuration the weights were trained with.
        spec: The dataset's channels and labels.
        weights: One state dict per fold (an ensemble averages their logits).
        mirror_axes: Spatial axes mirrored for test-time augmentation.
        source: Where the weights came from (folders and checkpoint names), for messages and manifests.
    """

    plan: ConfigurationPlan
    spec: DatasetSpec
    weights: tuple[Mapping[str, torch.Tensor], ...]
    mirror_axes: tuple[int, ...]
    source: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.weights:
            raise CheckpointError("TrainedModel needs the weights of at least one fold; got none.")

    def identity(self) -> str:
        """Hash of the plan, labels and weights: outputs of models with different identities never mix."""
        return content_hash([self.plan.to_json(standalone=True), self.spec.to_dict(), state_dict_digest(self.weights)])

    def build_network(self) -> torch.nn.Module:
        """The plan's network without deep supervision, on the CPU, with fold 0's weights, in eval mode.

        A cascade stage's network (``plan.previous_stage`` set) takes one more input channel per foreground label.

        Raises:
            CheckpointError: If a fold's weights do not fit the network the plan describes.
        """
        network = build_network(self.plan.architecture, num_input_channels=cascade_input_channels(self.plan, self.spec),
                                num_outputs=self.spec.num_segmentation_heads, deep_supervision=False, initialize=False)  # fmt: skip
        for source, state in zip(self.source or ("weights",) * len(self.weights), self.weights, strict=True):
            try:
                network.load_state_dict(state)
            except RuntimeError as err:
                raise CheckpointError(
                    f"{source}: the weights do not match the network of plan {self.plan.plans_name!r} / "
                    f"{self.plan.name!r} ({str(err).splitlines()[0]}); the checkpoint belongs to other plans "
                    "or another dataset."
                ) from err
        network.load_state_dict(self.weights[0])
        return network.eval()

    # ------------------------------------------------------------------------------------------ nnseg runs
    @classmethod
    def from_run(
        cls, run_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, checkpoint: str = "final",
        plans: Plans | None = None,
    ) -> TrainedModel:  # fmt: skip
        """Load the ``checkpoint_<checkpoint>.pt`` of one or several nnseg run folders (a fold ensemble).

        Args:
            run_dirs: One run folder or several (all of one plan and dataset).
            checkpoint: ``"final"``, ``"best"`` or ``"latest"``.
            plans: The plans the runs were trained with; needed only for checkpoints that do not carry the
                plans-level facts of their configuration.

        Raises:
            CheckpointError: If a checkpoint is missing or damaged, or the runs disagree in plan or dataset.
        """
        if checkpoint not in RUN_CHECKPOINTS:
            raise CheckpointError(f"checkpoint must be one of {list(RUN_CHECKPOINTS)}; got {checkpoint!r}.")
        folders = [Path(run_dirs)] if isinstance(run_dirs, str | os.PathLike) else [Path(d) for d in run_dirs]
        if not folders:
            raise CheckpointError("from_run needs at least one run folder; got none.")
        payloads = [_load_run_checkpoint(folder, checkpoint) for folder in folders]
        first = payloads[0]
        for folder, payload in zip(folders[1:], payloads[1:], strict=True):
            if payload.get("plan") != first.get("plan") or payload.get("dataset_spec") != first.get("dataset_spec"):
                raise CheckpointError(
                    f"run {folder} was trained with another plan or dataset than {folders[0]}; a fold ensemble "
                    "needs runs of one configuration of one plans file."
                )
        plan = _plan_from_payload(first, folders[0], plans)
        spec = DatasetSpec.from_dict(first["dataset_spec"], source=f"{folders[0]} (dataset_spec)")
        weights = tuple(strip_wrapper_prefixes(p["network_weights"]) for p in payloads)
        source = tuple(str(f / f"checkpoint_{checkpoint}.pt") for f in folders)
        return cls(plan, spec, weights, default_mirror_axes(plan), source)

    # ------------------------------------------------------------------------------------------ nnU-Net
    @classmethod
    def from_nnunet_model_folder(
        cls, folder: str | os.PathLike[str], *, folds: Sequence[int | str] | None = None,
        checkpoint_name: str = "checkpoint_final.pth",
    ) -> TrainedModel:  # fmt: skip
        """Load an nnU-Net v2 trained model folder (``plans.json``, ``dataset.json``, ``fold_k/<checkpoint>``).

        Args:
            folder: The trained model folder (``.../Dataset001_X/nnUNetTrainer__nnUNetPlans__3d_fullres``).
            folds: Folds to ensemble (ints or ``"all"``); None uses every ``fold_<k>`` holding the checkpoint.
            checkpoint_name: Checkpoint file name inside each fold folder.

        Raises:
            CheckpointError: If a fold or checkpoint is missing, cannot be loaded safely, or does not fit the plans.
            PlansError, DatasetError: If ``plans.json`` or ``dataset.json`` is invalid.
        """
        root = Path(folder)
        plans = Plans.load(root / "plans.json")
        spec = DatasetSpec.load(root / "dataset.json")
        fold_names = _select_folds(root, folds, checkpoint_name)
        checkpoints = [load_nnunet_checkpoint(root / f"fold_{f}" / checkpoint_name) for f in fold_names]
        first = checkpoints[0]
        configuration = str(first.get("init_args", {}).get("configuration", ""))
        if configuration not in plans:
            raise CheckpointError(
                f"{root / f'fold_{fold_names[0]}' / checkpoint_name}: configuration {configuration!r} recorded in the "
                f"checkpoint is not in {root / 'plans.json'} (has {list(plans.configuration_names)})."
            )
        plan = plans[configuration]
        axes = first.get("inference_allowed_mirroring_axes")
        mirror_axes = tuple(int(a) for a in axes) if axes is not None else default_mirror_axes(plan)
        weights = tuple(strip_wrapper_prefixes(c["network_weights"]) for c in checkpoints)
        source = tuple(str(root / f"fold_{f}" / checkpoint_name) for f in fold_names)
        model = cls(plan, spec, weights, mirror_axes, source)
        model.build_network()  # check every fold fits the plans now, not after the first case
        return model


def _load_run_checkpoint(folder: Path, checkpoint: str) -> dict[str, Any]:
    path = folder / f"checkpoint_{checkpoint}.pt"
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("checkpoint_*.pt")) if folder.is_dir() else []
        raise CheckpointError(
            f"run folder {folder} has no {path.name}; found {present or 'no checkpoints'}. "
            + (
                "Use checkpoint='best' or 'latest', or finish the training."
                if present
                else "Check the run folder path."
            )
        )
    payload = Checkpoint.load(path).to_dict()
    missing = [key for key in ("plan", "dataset_spec") if payload[key] is None]
    if missing:
        raise CheckpointError(f"{path} lacks {missing}; it was not written by nnseg's trainer.")
    return payload


def _plan_from_payload(payload: Mapping[str, Any], folder: Path, plans: Plans | None) -> ConfigurationPlan:
    name = payload.get("plan_name")
    try:
        if plans is not None and name in plans:
            return plans[str(name)]
        return ConfigurationPlan.from_json(payload["plan"], name=name, where=f"{folder} (plan)")
    except NnsegError as err:
        raise CheckpointError(
            f"cannot rebuild the plan of run {folder}: {err} Pass plans=Plans.load('<the plans file>') "
            "(--plans PLANS_JSON on the command line)."
        ) from err


def _select_folds(root: Path, folds: Sequence[int | str] | None, checkpoint_name: str) -> list[str]:
    if not root.is_dir():
        raise CheckpointError(f"model folder {root} does not exist; expected an nnU-Net v2 trained model folder.")
    available = sorted(
        (m.group(1) for d in root.iterdir() if (m := _FOLD_DIR.fullmatch(d.name)) and (d / checkpoint_name).is_file()),
        key=lambda f: (f == "all", int(f) if f.isdigit() else 0),
    )
    if folds is None:
        chosen = [f for f in available if f != "all"]
        if not chosen:
            raise CheckpointError(
                f"model folder {root} has no fold_<k>/{checkpoint_name}; found folds {available or 'none'}. "
                "Pass folds=('all',) for a fold_all model, or another checkpoint_name."
            )
        return chosen
    wanted = [str(f) for f in folds]
    missing = [f for f in wanted if f not in available]
    if missing:
        raise CheckpointError(
            f"model folder {root}: fold(s) {missing} have no {checkpoint_name}; folds with it: {available or 'none'}. "
            "Choose among those, or train the missing folds."
        )
    return wanted
