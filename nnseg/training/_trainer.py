"""``Trainer``: nnU-Net's training as a step loop with hooks, exact resume and no global state.

The run is ``config.iterations_per_epoch * config.num_epochs`` optimiser steps. The batch of step ``s`` and the
learning rate of step ``s`` are pure functions of ``(seed, s)``, and a checkpoint holds everything else that
changes (weights, optimiser, grad scaler, RNG states, EMA, callback state), so a run killed at any moment and
resumed from its last checkpoint ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnseg.checkpoint import Checkpoint, TrainState
from nnseg.dataset import DatasetSpec
from nnseg.losses import DeepSupervisionLoss, DiceBCELoss, DiceCELoss, deep_supervision_weights, full_resolution
from nnseg.network import build_network
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore
from nnseg.training._augmentation import deep_supervision_scales
from nnseg.training._batches import Batch
from nnseg.training._callbacks import Callback, MetricsLog, ProgressBar, ProgressPlot
from nnseg.training._config import TrainerConfig
from nnseg.training._ddp import GLOBAL_RNG_LOCK, DistributedContext, rank_batch_sizes, rank_oversampling
from nnseg.training._graceful import EpochLoss, SignalStop
from nnseg.training._loader import TrainingLoader, ValidationLoader
from nnseg.training._pretrained import load_pretrained_weights
from nnseg.training._pseudo_dice import ConfusionCounts, confusion_counts
from nnseg.training._resume import TrainingParts, capture_checkpoint, restore_checkpoint
from nnseg.training._run_folder import RunFolder, check_store, cudnn_benchmark, describe_run, resolve_device
from nnseg.training._split import Split
from nnseg.training._trainer_validation import FinalValidation

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)


class Trainer(FinalValidation):
    """Train one configuration on one split.

    Args:
        plan: The configuration to train (``plans["3d_fullres"]``).
        store: Its preprocessed store.
        split: Training and validation case ids.
        spec: The dataset's labels and channels.
        config: Hyper-parameters (nnU-Net's defaults).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; no environment variable is read.
        network: A network to train instead of the plan's (it must return a list of outputs, highest
            resolution first, when ``config.deep_supervision``).
        loss: A loss to use instead of Dice + CE (called as ``loss(outputs, targets)``).
        callbacks: Callbacks; None gives the defaults (metrics log, progress bar, progress plot).

    Example:
        >>> trainer = Trainer(plans["3d_fullres"], store, Split.kfold(store.case_ids, 0), spec=ds.spec,
        ...                   config=TrainerConfig(num_epochs=100), device="cuda:0")
        >>> trainer.fit("work/runs/fold_0")
    """

    def __init__(
        self,
        plan: ConfigurationPlan,
        store: PreprocessedStore,
        split: Split,
        *,
        spec: DatasetSpec,
        config: TrainerConfig | None = None,
        device: str | torch.device = "cpu",
        network: nn.Module | None = None,
        loss: nn.Module | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> None:
        self.plan, self.store, self.split, self.spec = plan, store, split, spec
        self.config = config or TrainerConfig()
        self.device = resolve_device(device)
        self.callbacks: list[Callback] = list(callbacks) if callbacks is not None else [
            MetricsLog(), ProgressBar(), ProgressPlot()
        ]  # fmt: skip
        self._network_override, self._loss_override = network, loss
        self.state = TrainState(seed=self.config.seed)
        self._stop_requested = False
        self._epoch_loss = EpochLoss()  # the current epoch's losses so far (kept by a mid-epoch checkpoint)
        self.distributed = DistributedContext()
        self.validation_summary: dict[str, Any] = {}

    @property
    def step(self) -> int:
        """Optimiser steps done (``state.step``; the EMA, best and epoch are on ``state`` too)."""
        return self.state.step

    # ----------------------------------------------------------------------------------------------- hooks
    def build_network(self) -> nn.Module:
        """The plan's network (seeded with ``config.seed``), with deep supervision as configured.

        Torch initialises weights from its process-global generator: the build runs under a lock, inside
        ``fork_rng``, so trainers in other threads neither disturb it nor see the seed.
        """
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return build_network(
                self.plan.architecture, num_input_channels=self.spec.num_channels,
                num_outputs=self.spec.num_segmentation_heads, deep_supervision=self.config.deep_supervision,
            )  # fmt: skip

    def build_loss(self) -> nn.Module:
        """Dice + CE (labels) or Dice + BCE (regions), wrapped for deep supervision."""
        if self.spec.has_regions:
            base: nn.Module = DiceBCELoss(batch_dice=self.plan.batch_dice,
                                          has_ignore_channel=self.spec.ignore_label is not None)  # fmt: skip
        else:
            base = DiceCELoss(batch_dice=self.plan.batch_dice, ignore_label=self.spec.ignore_label)
        if not self.config.deep_supervision:
            return _FirstOutput(base)
        # under DDP the lowest output keeps a tiny weight so that every parameter gets a gradient (as nnU-Net)
        lowest = 1e-6 if self.distributed.is_distributed else 0.0
        weights = deep_supervision_weights(len(deep_supervision_scales(self.plan)), lowest_weight=lowest)
        return DeepSupervisionLoss(base, weights)

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        """SGD with Nesterov momentum, as nnU-Net."""
        c = self.config
        return torch.optim.SGD(network.parameters(), lr=c.initial_lr, momentum=c.momentum,
                               weight_decay=c.weight_decay, nesterov=c.nesterov)  # fmt: skip

    def build_lr_schedule(self) -> Callable[[int], float]:
        """The learning rate as a function of the global step."""
        return self.config.learning_rate

    def build_train_loader(self) -> TrainingLoader:
        """The step-deterministic training batch stream (this rank's share of the batch under DDP)."""
        return TrainingLoader(self.store, self.split.train, self.plan, self.spec,
                              seed=self.distributed.seed(self.config.seed), num_workers=self.config.num_loader_workers,
                              augmentation_device=self.config.augmentation_device, **self._loader_options())  # fmt: skip

    def build_val_loader(self) -> ValidationLoader | None:
        """The validation batches (None when ``val_iterations_per_epoch`` is 0 or the split has no val cases)."""
        if self.config.val_iterations_per_epoch == 0 or not self.split.val:
            return None
        return ValidationLoader(self.store, self.split.val, self.plan, self.spec,
                                num_batches=self.config.val_iterations_per_epoch,
                                seed=self.distributed.seed(self.config.seed + 1),
                                num_workers=min(self.config.num_loader_workers, 1),
                                resample_each_epoch=not self.config.replay_validation_batches,
                                **self._loader_options())  # fmt: skip

    def _loader_options(self) -> dict[str, Any]:
        """This rank's share of the global batch and of its forced-foreground samples, and the target options."""
        ctx, size = self.distributed, self.plan.batch_size
        return {"batch_size": rank_batch_sizes(size, ctx.world_size)[ctx.rank],
                "oversample_foreground_percent": rank_oversampling(size, ctx.world_size,
                                                                   self.config.oversample_foreground)[ctx.rank],
                "probabilistic_oversampling": self.config.probabilistic_oversampling,
                "deep_supervision": self.config.deep_supervision, "pin_memory": self.device.type == "cuda"}  # fmt: skip

    def training_step(self, batch: Batch) -> float:
        """One optimiser step on ``batch``; returns the loss."""
        batch = batch.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.model(batch.data)
            loss = self.loss(outputs, list(batch.target))
        self.grad_scaler.scale(loss).backward()
        if self.config.grad_clip_norm is not None:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.grad_clip_norm)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        return float(loss.detach())

    def validation_step(self, batch: Batch, counts: ConfusionCounts) -> float:
        """Loss of one validation batch; its TP/FP/FN are added to ``counts``."""
        batch = batch.to(self.device, non_blocking=True)
        with torch.no_grad(), self._autocast():
            outputs = self.model(batch.data)
            loss = self.loss(outputs, list(batch.target))
        full = full_resolution(outputs)
        counts.add(*confusion_counts(full, batch.target[0], regions=self.spec.has_regions,
                                     ignore_label=self.spec.ignore_label))  # fmt: skip
        return float(loss)

    def describe(self) -> dict[str, Any]:
        """What this run is (plan, plan name, dataset spec, split, config, plans hash): ``run.json``'s content."""
        return describe_run(self.plan, self.spec, self.split, self.config)

    def checkpoint(self) -> Checkpoint:
        """The complete state of the run now (weights, optimiser, scaler, schedule, progress with RNG states)."""
        return capture_checkpoint(self._parts(), self.state, lr=self.lr_at(self.step), description=self.describe(),
                                  extra=self._epoch_loss.to_extra())  # fmt: skip

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint`` (once ``fit`` has built the network, optimiser and scaler).

        Raises:
            CheckpointError: If its weights or optimiser state do not fit the network.
            ConfigError: If it holds the state of another number of callbacks.
        """
        self.state = restore_checkpoint(self._parts(), checkpoint)
        self._epoch_loss = EpochLoss.from_extra(checkpoint.extra, is_main=self.distributed.is_main)

    def _parts(self) -> TrainingParts:
        world_size = self.distributed.world_size
        return TrainingParts(self.network, self.optimizer, self.grad_scaler, self.callbacks, world_size)

    # ------------------------------------------------------------------------------------------------- fit
    def request_stop(self) -> None:
        """Ask ``fit`` to stop after the current epoch (and its checkpoint)."""
        self._stop_requested = True

    def fit(self, run_dir: str | Path, *, reference_dir: str | Path | None = None) -> Path:
        """Train to the end of the schedule, resuming from ``run_dir``'s latest checkpoint if there is one.

        Under DDP every rank calls ``fit`` with the same ``run_dir``; rank 0 writes the files, runs the callbacks
        and holds the folder's lock. If training raises, the callbacks' ``on_fit_error`` runs (closing the progress
        bar) first. SIGINT / SIGTERM (from the main thread) stop at the next step boundary, after writing
        ``checkpoint_latest.pt``; running ``fit`` again resumes bitwise-identically (a second signal stops at once).

        Args:
            run_dir: The run folder.
            reference_dir: The raw dataset's ``labelsTr``, for the final validation summary in the source grid.

        Returns:
            The path of ``checkpoint_final.pt``.

        Raises:
            CheckpointError: If ``run_dir`` holds a checkpoint of another plan, dataset or config, or a damaged one.
            ConfigError: If the split names cases the store lacks.
            LockError: If another live process trains in ``run_dir`` (naming its pid, host and start time).
            TrainingStopped: After SIGINT / SIGTERM, once ``checkpoint_latest.pt`` holds the last step done.
            WriteError: If a checkpoint cannot be written (disk full, file-size limit); the previous one stays.
        """
        self.distributed = DistributedContext.current()
        c = self.config
        folder = RunFolder(Path(run_dir), c.checkpoint_every_epochs, c.keep_checkpoints, self.distributed.is_main)
        with folder.lock():
            return self._fit(folder, reference_dir)

    def _fit(self, folder: RunFolder, reference_dir: str | Path | None) -> Path:
        c = self.config
        if folder.final_path.is_file():
            return self._finish_trained(folder, reference_dir)
        check_store(self.store, self.plan, self.spec)
        self.split.check_cases(self.store.case_ids(), f"the store {self.store.root}")
        self._setup()
        if c.pretrained_weights is not None and not folder.latest_path.is_file():  # a resume loads its checkpoint
            load_pretrained_weights(self.network, c.pretrained_weights)
        resumed = folder.start(self.describe())
        if resumed is not None:
            self.restore(resumed)
            logger.info("resuming %s at step %d", folder.root, self.step)
        try:
            self._notify("on_fit_start", folder.root)
            self._run_epochs(folder)
            folder.save_final(self.checkpoint)
            if c.final_validation:
                self._validate_saved(folder, reference_dir)  # FinalValidation
            self._notify("on_fit_end", folder.root)
        except BaseException as error:
            self._notify("on_fit_error", error, safe=True)  # never hides ``error``
            raise
        self.distributed.barrier()
        return folder.final_path

    def _notify(self, hook: str, *args: Any, safe: bool = False) -> None:
        """Call ``hook`` on every callback (rank 0 only: callbacks write files); ``safe`` logs their errors."""
        for callback in self.callbacks if self.distributed.is_main else ():
            try:
                getattr(callback, hook)(self, *args)
            except Exception:
                if not safe:
                    raise
                logger.exception("%s.%s failed", type(callback).__name__, hook)

    def _setup(self) -> None:
        network = self._network_override or self.build_network()
        self.network = self.distributed.sync_batchnorm(network, self.device).to(self.device)
        self.loss = self._loss_override or self.build_loss()
        self.optimizer = self.build_optimizer(self.network)
        self.lr_at = self.build_lr_schedule()
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.config.use_amp(self.device.type))
        self.train_loader = self.build_train_loader()
        self.val_loader = self.build_val_loader()
        # DDP and compile wrappers share the parameters; checkpoints store the plain module's weights
        model = self.distributed.wrap(self.network, self.device)
        self.model: nn.Module = torch.compile(model) if self.config.compile else model  # type: ignore[assignment]

    def _run_epochs(self, folder: RunFolder) -> None:
        total = self.config.total_steps
        batches: Iterator[Batch] = self.train_loader.iterate(start_step=self.step, num_steps=total - self.step)
        try:
            with cudnn_benchmark(self.config.cudnn_benchmark, self.device), SignalStop(self.distributed) as stop:
                while self.step < total and not self._stop_requested:
                    metrics = self._run_epoch(batches, stop)
                    if metrics is None:  # a signal: save this step (with every rank's epoch losses), then stop
                        self._epoch_loss = stop.gathered(self._epoch_loss)
                        folder.save_latest(self.checkpoint)
                        raise stop.error(folder.root, self.step, total)
                    self._notify("on_epoch_end", metrics)
                    self._stop_requested = self.distributed.any(self._stop_requested)
                    folder.after_epoch(self.checkpoint, epoch=metrics["epoch"], best=self.state.is_best,
                                       finished=self.step >= total)  # fmt: skip
        finally:
            getattr(batches, "close", lambda: None)()  # stops the loader's workers

    def _run_epoch(self, batches: Iterator[Batch], stop: SignalStop) -> dict[str, Any] | None:
        """Train to the end of the epoch and validate; None when a signal stopped it at a step boundary."""
        c, epoch = self.config, self.state.epoch
        end = min((epoch + 1) * c.iterations_per_epoch, c.total_steps)
        self.network.train()
        steps, start = 0, time.perf_counter()
        lr = self.lr_at(epoch * c.iterations_per_epoch)  # logged: the rate at the epoch's start, as nnU-Net logs it
        while self.step < end:
            batch = None if stop.requested() else stop.next_batch(batches)
            if batch is None:
                return None
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step)
            loss = self.training_step(batch)
            self._epoch_loss, steps = self._epoch_loss.add(loss), steps + 1
            self.state = self.state.advanced()
            self._notify("on_step_end", self.step, loss)
        seconds_per_step = (time.perf_counter() - start) / max(steps, 1)
        epoch_loss, self._epoch_loss = stop.gathered(self._epoch_loss), EpochLoss()
        val_loss, counts = self._validate(epoch)
        self.state = self.state.end_epoch(counts.mean_dice(), c.ema_momentum)
        return _epoch_metrics(self.state, epoch_loss.mean, val_loss, counts, lr=lr, seconds_per_step=seconds_per_step)

    def _validate(self, epoch: int) -> tuple[float, ConfusionCounts]:
        counts = ConfusionCounts()
        if self.val_loader is None:
            return math.nan, counts
        self.network.eval()
        losses = [self.validation_step(batch, counts) for batch in self.val_loader.batches(epoch)]
        self.network.train()
        return self.distributed.sum_validation(losses, counts)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        use = self.config.use_amp(self.device.type)
        return torch.autocast(self.device.type) if use else contextlib.nullcontext()


def _epoch_metrics(
    state: TrainState, train_loss: float, val_loss: float, counts: ConfusionCounts, *, lr: float,
    seconds_per_step: float,
) -> dict[str, Any]:  # fmt: skip
    """The line ``metrics.jsonl`` gets for the epoch that ``state`` just finished."""
    return {
        "epoch": state.epoch - 1, "step": state.step, "train_loss": train_loss, "val_loss": val_loss,
        "pseudo_dice": counts.mean_dice(), "pseudo_dice_per_class": counts.dice_per_class(),
        "ema_pseudo_dice": state.ema_pseudo_dice, "lr": lr, "seconds_per_step": seconds_per_step,
    }  # fmt: skip


class _FirstOutput(nn.Module):
    """Apply a loss to the full-resolution output and target only (deep supervision off)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, outputs: Any, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.loss(full_resolution(outputs), targets[0])
