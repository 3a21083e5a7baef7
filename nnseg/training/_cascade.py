"""Training the cascade: ``3d_cascade_fullres`` on the image plus the one-hot ``3d_lowres`` segmentation.

:class:`CascadeTrainer` is a :class:`~nnseg.training.Trainer` whose network takes
``spec.num_channels + len(spec.foreground_labels)`` input channels, whose batches (training and validation)
carry the previous stage's one-hot foreground after the image (training batches with nnU-Net's cascade
augmentations, see :mod:`nnseg.training._cascade_augment`), and whose final validation reads each validation
case's previous-stage segmentation. The segmentations come from the ``3d_lowres`` run of the same plans and
run name (:mod:`nnseg.training._next_stage`); a missing one stops training before the first step.

:func:`trainer_for_run` builds the right trainer for a work folder's run: the cascade trainer for a
configuration with a previous stage, the plain trainer otherwise, wired to write the next stage's input when
the configuration has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnseg.dataset import DatasetSpec
from nnseg.inference._previous_stage import append_previous_stage, cascade_input_channels
from nnseg.network import build_network
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing import PreprocessedCase, PreprocessedStore, store_name
from nnseg.training._cascade_augment import CascadeAugmentation, CascadeBatchFactory
from nnseg.training._config import TrainerConfig
from nnseg.training._ddp import GLOBAL_RNG_LOCK
from nnseg.training._loader import TrainingLoader, ValidationLoader
from nnseg.training._next_stage import NextStageTarget, PreviousStageSegmentations
from nnseg.training._split import Split
from nnseg.training._trainer import Trainer
from nnseg.workspace import Workspace

__all__ = ["CascadeTrainer", "lowres_run_name", "trainer_for_run"]


class CascadeTrainer(Trainer):
    """Train a cascade stage (a plan with ``previous_stage``) on the image and the previous stage's one-hot.

    Args:
        plan: The cascade configuration (``plans["3d_cascade_fullres"]``).
        store: Its preprocessed store (the ``3d_fullres`` store: both preprocess identically).
        split: Training and validation case ids.
        previous: The previous stage's segmentations of every case of the split, on ``store``'s grid.
        command: The command that writes missing segmentations (named in the error).
        **options: The :class:`~nnseg.training.Trainer` keywords (``spec`` is required).

    Raises:
        ConfigError: From :meth:`fit`, before the first step, if a case of the split has no usable
            previous-stage segmentation.
    """

    def __init__(
        self, plan: ConfigurationPlan, store: PreprocessedStore, split: Split, *,
        previous: PreviousStageSegmentations, command: str = "the final validation of the 3d_lowres folds",
        **options: Any,
    ) -> None:  # fmt: skip
        super().__init__(plan, store, split, **options)
        self.previous, self.command = previous, command
        self.cascade = CascadeAugmentation(labels=tuple(self.spec.foreground_labels))

    def build_network(self) -> nn.Module:
        """The plan's network with one extra input channel per foreground label."""
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return build_network(
                self.plan.architecture, num_input_channels=cascade_input_channels(self.plan, self.spec),
                num_outputs=self.spec.num_segmentation_heads, deep_supervision=self.config.deep_supervision,
            )  # fmt: skip

    def build_train_loader(self) -> TrainingLoader:
        """The training batches, with the one-hot previous stage and the cascade augmentations."""
        loader = super().build_train_loader()
        loader.factory = CascadeBatchFactory(loader.factory, self.previous.read_region, self.cascade)
        return loader

    def build_val_loader(self) -> ValidationLoader | None:
        """The validation batches, with the one-hot previous stage (no augmentation)."""
        loader = super().build_val_loader()
        if loader is not None:
            loader.factory = CascadeBatchFactory(loader.factory, self.previous.read_region, self.cascade)
        return loader

    def read_validation_case(self, case_id: str) -> PreprocessedCase:
        """The case's image with its one-hot previous-stage segmentation appended."""
        case = self.store.read_case(case_id)
        data = append_previous_stage(case.data, self.previous.read(case_id), self.spec)
        return PreprocessedCase(case.case_id, data, case.seg, case.properties, case.class_locations)

    def check_previous_stage(self) -> None:
        """Refuse to start unless every case of the split has a usable previous-stage segmentation.

        Raises:
            ConfigError: Naming the missing cases and the command that writes them, or the foreign files.
        """
        cases = tuple(dict.fromkeys((*self.split.train, *self.split.val)))
        self.previous.check(cases, self.store, self.plan, self.spec, self.command)

    def fit(self, run_dir: str | Path, *, reference_dir: str | Path | None = None) -> Path:
        """:meth:`Trainer.fit` after :meth:`check_previous_stage` (nothing is written when it fails)."""
        self.check_previous_stage()
        return super().fit(run_dir, reference_dir=reference_dir)

    def validate_finished(self, run_dir: str | Path, *, reference_dir: str | Path | None = None) -> dict[str, Any]:
        """:meth:`Trainer.validate_finished` after :meth:`check_previous_stage`."""
        self.check_previous_stage()
        return super().validate_finished(run_dir, reference_dir=reference_dir)


def lowres_run_name(plans_name: str, configuration: str, run_name: str) -> str:
    """The run folder name ``<plans>__<configuration>__<run name>`` (the key of its next-stage segmentations)."""
    return f"{plans_name}__{configuration}__{run_name}"


def trainer_for_run(
    workspace: Workspace, plans_name: str, run_name: str, plan: ConfigurationPlan, store: PreprocessedStore,
    split: Split, *, spec: DatasetSpec, config: TrainerConfig, device: str,
) -> Trainer:  # fmt: skip
    """The trainer of ``WORK/runs/<plans>__<plan.name>__<run_name>``: cascade-aware in both directions.

    A plan with ``previous_stage`` gets a :class:`CascadeTrainer` reading the segmentations of the previous
    stage's run of the same plans and run name; a plan with ``next_stage`` gets a :class:`Trainer` whose final
    validation writes them (beside the next stage's store); any other plan a plain :class:`Trainer`.
    """
    if plan.previous_stage is not None:
        source = lowres_run_name(plans_name, plan.previous_stage, run_name)
        command = (f"`nnseg train {workspace.root} -c {plan.previous_stage} -f K --plans {plans_name} --run-name "
                   f"{run_name}` for every fold K")  # fmt: skip
        return CascadeTrainer(plan, store, split, previous=PreviousStageSegmentations.of(store.root, source),
                              command=command, spec=spec, config=config, device=device)  # fmt: skip
    trainer = Trainer(plan, store, split, spec=spec, config=config, device=device)
    if plan.next_stages:
        next_plan = Plans.load(workspace.plans_path(plans_name))[plan.next_stages[0]]
        next_store = PreprocessedStore(workspace.preprocessed_dir(store_name(next_plan, spec)))
        segmentations = PreviousStageSegmentations.of(next_store.root, lowres_run_name(plans_name, plan.name, run_name))
        trainer.next_stage = NextStageTarget(next_store, segmentations)
    return trainer
