"""The final validation of a training run: after ``fit``, on a finished run (``--val-only``), with the best weights.

:class:`FinalValidation` is the part of :class:`~nnseg.training.Trainer` that predicts the fold's validation
cases with the sliding window and writes them (and a summary) to ``run_dir/validation/``; the functions here
check that a saved run can be validated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnseg.checkpoint import Checkpoint
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedCase, PreprocessedStore
from nnseg.training._augmentation import AugmentationConfig
from nnseg.training._config import TrainerConfig
from nnseg.training._ddp import DistributedContext
from nnseg.training._final_validation import validate_cases
from nnseg.training._next_stage import NextStageTarget, write_next_stage
from nnseg.training._run_folder import RunFolder
from nnseg.training._split import Split

__all__ = ["FinalValidation", "check_finished", "validation_weights"]

logger = logging.getLogger(__name__)


class FinalValidation:
    """Full-case validation of a :class:`~nnseg.training.Trainer`'s split (a part of the trainer)."""

    plan: ConfigurationPlan
    store: PreprocessedStore
    split: Split
    spec: DatasetSpec
    config: TrainerConfig
    device: torch.device
    network: nn.Module
    distributed: DistributedContext
    validation_summary: dict[str, Any]
    next_stage: NextStageTarget | None = None
    """Set on a ``3d_lowres`` run with a next stage: its validation also writes the cascade's input there."""

    def describe(self) -> dict[str, Any]:
        """What this run is (``run.json``'s content); the trainer provides it."""
        raise NotImplementedError

    def _setup(self) -> None:  # provided by the trainer
        raise NotImplementedError

    def validate(self, run_dir: str | Path, *, reference_dir: str | Path | None = None) -> dict[str, Any]:
        """Full-case validation of the split's validation cases with the current weights (returns the summary).

        Writes ``run_dir/validation/<case><file_ending>`` (plus ``<case>.npz`` and ``<case>.json`` with
        ``config.save_probabilities``) and a summary (see :func:`validate_cases`).
        """
        if not self.split.val:
            return {}
        mirror = AugmentationConfig.for_plan(self.plan, self.spec, deep_supervision=False).mirror_axes
        self.validation_summary = validate_cases(
            self.network, self.store, self.split.val, patch_size=self.plan.patch_size, spec=self.spec,
            out_dir=Path(run_dir) / "validation", device=self.device, mirror_axes=mirror,
            reference_dir=None if reference_dir is None else Path(reference_dir), distributed=self.distributed,
            plan=self.plan, save_probabilities=self.config.save_probabilities, read_case=self.read_validation_case,
            after_case=self._write_next_stage if self.next_stage is not None else None,
        )  # fmt: skip
        self.network.train()
        return self.validation_summary

    def read_validation_case(self, case_id: str) -> PreprocessedCase:
        """The network input of a validation case (the cascade trainer appends the previous stage)."""
        return self.store.read_case(case_id)

    def _write_next_stage(self, logits: Any, case: PreprocessedCase) -> None:
        if self.next_stage is not None:
            write_next_stage(logits, case.case_id, case.properties, self.plan, self.spec, self.next_stage,
                             self.split.fold)  # fmt: skip

    def validate_finished(self, run_dir: str | Path, *, reference_dir: str | Path | None = None) -> dict[str, Any]:
        """Rerun the final validation of a finished run without training (nnU-Net's ``--val``; CLI ``--val-only``).

        Uses ``checkpoint_final.pt`` (``checkpoint_best.pt`` with ``config.validate_with_best``), rewrites
        ``run_dir/validation/`` and returns the summary.

        Raises:
            ConfigError: If the run has not finished (nothing is written) or the best checkpoint is missing.
            CheckpointError: If the run folder belongs to another plan, dataset, split or config.
        """
        self.distributed = DistributedContext.current()
        folder = RunFolder(Path(run_dir), is_main=self.distributed.is_main)
        return self._validate_saved(folder, reference_dir, check_finished(folder, self.describe()))

    def _validate_saved(
        self, folder: RunFolder, reference_dir: str | Path | None, checkpoint: Checkpoint | None = None
    ) -> dict[str, Any]:
        """The final validation: of ``checkpoint`` (a finished run) or of the weights just trained."""
        best = validation_weights(folder) if self.config.validate_with_best else None
        if checkpoint is not None:
            self._setup()
            self.network.load_state_dict(checkpoint.network_weights)
        if best is not None:
            self.network.load_state_dict(best)
        return self.validate(folder.root, reference_dir=reference_dir)

    def _finish_trained(self, folder: RunFolder, reference_dir: str | Path | None) -> Path:
        """``fit`` on a finished run: validate it if its validation is missing, else nothing."""
        checkpoint = check_finished(folder, self.describe())
        folder.remove_latest()  # left behind when the process died between the final checkpoint and its removal
        if self.config.final_validation and not (folder.root / "validation" / "summary_preprocessed.json").is_file():
            self._validate_saved(folder, reference_dir, checkpoint)
        else:
            logger.info("%s is already trained to the end; nothing to do", folder.final_path)
        return folder.final_path


def check_finished(folder: RunFolder, description: Mapping[str, Any]) -> Checkpoint:
    """The final checkpoint of ``folder``, checked against the run about to use it.

    Raises:
        ConfigError: If the run never finished (no ``checkpoint_final.pt``).
        CheckpointError: If the checkpoint is damaged or belongs to another plan, dataset, split or config.
    """
    if not folder.final_path.is_file():
        state = "resume it" if folder.latest_path.is_file() else "train it"
        raise ConfigError(
            f"the run {folder.root} has not finished: {folder.final_path.name} is missing, so there is no final "
            f"validation to rerun; {state} to the end first (the same command without --val-only)."
        )
    checkpoint = folder.load(folder.final_path)
    folder.check_compatible(checkpoint.description(), description)
    return checkpoint


def validation_weights(folder: RunFolder) -> dict[str, torch.Tensor]:
    """The weights of ``checkpoint_best.pt``, for a final validation with the best checkpoint.

    Raises:
        ConfigError: If the run wrote no best checkpoint.
    """
    if not folder.best_path.is_file():
        raise ConfigError(
            f"validate_with_best (--val-best): {folder.best_path} does not exist; a best checkpoint is written only "
            "when the validation pseudo-Dice runs (val_iterations_per_epoch > 0 and validation cases). Validate "
            "with the final checkpoint instead (drop --val-best)."
        )
    return dict(folder.load(folder.best_path).network_weights)
