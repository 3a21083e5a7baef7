"""``TrainerConfig``: every training hyper-parameter in one frozen, JSON-serialisable value.

The schedule is counted in optimiser steps: ``iterations_per_epoch * num_epochs`` steps in total. An epoch is
only the period of validation, logging and checkpoints, so changing the schedule is a matter of configuration,
never of a subclass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

from nnseg._checks import parse_bool, parse_choice, parse_device, parse_int, parse_number, parse_optional_bool
from nnseg._suggest import unknown_name_hint
from nnseg.errors import ConfigError

__all__ = ["LrSchedule", "TrainerConfig"]

LrSchedule = Literal["per_step", "per_epoch"]
_SCHEDULES = ("per_step", "per_epoch")
_OWNER = "TrainerConfig"


@dataclass(frozen=True)
class TrainerConfig:
    """Training hyper-parameters; the defaults are nnU-Net v2's.

    Args:
        iterations_per_epoch: Optimiser steps per epoch (nnU-Net: 250).
        num_epochs: Epochs (nnU-Net: 1000). Total steps = ``iterations_per_epoch * num_epochs``.
        val_iterations_per_epoch: Validation batches per epoch for the pseudo-Dice (nnU-Net: 50).
        initial_lr: Learning rate at step 0.
        weight_decay: SGD weight decay.
        momentum: SGD momentum (Nesterov when ``nesterov``).
        nesterov: Use Nesterov momentum.
        poly_exponent: Exponent of the polynomial decay ``lr = initial_lr * (1 - t / T) ** poly_exponent``.
        lr_schedule: ``"per_epoch"`` (nnU-Net: t counts epochs, T = num_epochs, set at the start of each epoch)
            or ``"per_step"`` (opt-in: t counts steps, T the total, a smooth decay).
        oversample_foreground: Fraction of each batch forced to contain foreground (nnU-Net: 0.33).
        probabilistic_oversampling: Force each sample with probability ``oversample_foreground`` instead of the
            last fraction of the batch (nnU-Net's ``probabilistic_oversampling``; off by default).
        replay_validation_batches: Validate every epoch on the same batches (opt-in); by default each epoch
            gets fresh batches, as nnU-Net, still a pure function of the seed and the epoch.
        deep_supervision: Train with losses at every decoder resolution.
        grad_clip_norm: Gradient norm clipping threshold; None disables clipping.
        amp: Mixed precision; None means on for CUDA devices, off otherwise.
        compile: Wrap the network with ``torch.compile``.
        cudnn_benchmark: Set ``torch.backends.cudnn.benchmark`` for the run (faster, not bitwise reproducible).
        seed: Seed of weights initialisation, sampling and augmentation.
        num_loader_workers: Data-loading worker processes (0 loads in the training process).
        checkpoint_every_epochs: Write ``checkpoint_latest`` every this many epochs.
        keep_checkpoints: How many periodic states to keep: 1 keeps ``checkpoint_latest`` only; k > 1 also keeps
            ``checkpoint_epoch_<e>.pt`` for the last k periods (the newest one is the latest state).
        ema_momentum: Weight of the previous value in the EMA of the validation pseudo-Dice (nnU-Net: 0.9).
        final_validation: At the end of ``fit``, predict the fold's validation cases with the sliding window
            and write them plus a summary to ``run_dir/validation/``.
        save_probabilities: The final validation also writes ``validation/<case>.npz`` (key ``probabilities``)
            and ``<case>.json`` (properties), the predictor's format, as nnU-Net's ``--npz`` (for ensembles).
        validate_with_best: The final validation uses ``checkpoint_best.pt`` (nnU-Net's ``--val_best``).
        pretrained_weights: An nnseg or nnU-Net checkpoint whose weights, except the segmentation heads, start
            a new run (fine-tuning; a resumed run loads its own checkpoint instead).
        augmentation_device: Run the spatial and intensity augmentation on this torch device (e.g. ``"cuda"``)
            from patches the loader workers crop on the CPU; None (default) augments in the workers. Same
            distributions as the CPU pipeline, different bits (see docs/training-data.md).
    """

    iterations_per_epoch: int = 250
    num_epochs: int = 1000
    val_iterations_per_epoch: int = 50
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    nesterov: bool = True
    poly_exponent: float = 0.9
    lr_schedule: LrSchedule = "per_epoch"
    oversample_foreground: float = 0.33
    probabilistic_oversampling: bool = False
    replay_validation_batches: bool = False
    deep_supervision: bool = True
    grad_clip_norm: float | None = 12.0
    amp: bool | None = None
    compile: bool = False
    cudnn_benchmark: bool = False
    seed: int = 0
    num_loader_workers: int = 2
    checkpoint_every_epochs: int = 1
    keep_checkpoints: int = 1
    ema_momentum: float = 0.9
    final_validation: bool = True
    save_probabilities: bool = False
    validate_with_best: bool = False
    pretrained_weights: str | None = None
    augmentation_device: str | None = None

    def __post_init__(self) -> None:
        for name in ("iterations_per_epoch", "num_epochs", "checkpoint_every_epochs", "keep_checkpoints"):
            parse_int(_OWNER, name, getattr(self, name), minimum=1)
        for name in ("val_iterations_per_epoch", "num_loader_workers", "seed"):
            parse_int(_OWNER, name, getattr(self, name), minimum=0)
        _number("initial_lr", self.initial_lr, low=0.0, low_open=True)
        _number("weight_decay", self.weight_decay, low=0.0)
        _number("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
        _number("poly_exponent", self.poly_exponent, low=0.0)
        _number("oversample_foreground", self.oversample_foreground, low=0.0, high=1.0)
        _number("ema_momentum", self.ema_momentum, low=0.0, high=1.0, high_open=True)
        if self.grad_clip_norm is not None:
            _number("grad_clip_norm", self.grad_clip_norm, low=0.0, low_open=True)
        parse_choice(_OWNER, "lr_schedule", self.lr_schedule, _SCHEDULES)
        for name in _BOOLS:
            parse_bool(_OWNER, name, getattr(self, name))
        parse_optional_bool(_OWNER, "amp", self.amp)
        if self.pretrained_weights is not None:
            if not isinstance(self.pretrained_weights, str | os.PathLike) or not str(self.pretrained_weights):
                raise ConfigError(
                    f"TrainerConfig.pretrained_weights must be the path of a checkpoint file or None; got "
                    f"{self.pretrained_weights!r}. Pass e.g. 'runs/.../fold_0/checkpoint_final.pt'."
                )
            object.__setattr__(self, "pretrained_weights", os.fspath(self.pretrained_weights))
        if self.augmentation_device is not None:
            object.__setattr__(
                self, "augmentation_device", parse_device(_OWNER, "augmentation_device", self.augmentation_device)
            )

    @property
    def total_steps(self) -> int:
        """``iterations_per_epoch * num_epochs``: the number of optimiser steps of the whole run."""
        return self.iterations_per_epoch * self.num_epochs

    @classmethod
    def from_step_budget(cls, total_steps: int, *, iterations_per_epoch: int = 250, **fields: Any) -> TrainerConfig:
        """Build a config that trains exactly ``total_steps`` steps.

        Args:
            total_steps: The step budget.
            iterations_per_epoch: Steps between validations and checkpoints; lowered to ``total_steps`` when
                the budget is smaller than one epoch.
            **fields: Any other :class:`TrainerConfig` field.

        Raises:
            ConfigError: If the budget is not a positive multiple of ``iterations_per_epoch``.
        """
        parse_int("TrainerConfig.from_step_budget", "total_steps", total_steps, minimum=1)
        parse_int("TrainerConfig.from_step_budget", "iterations_per_epoch", iterations_per_epoch, minimum=1)
        per_epoch = min(iterations_per_epoch, total_steps)
        if total_steps % per_epoch:
            lower = total_steps - total_steps % per_epoch
            raise ConfigError(
                f"TrainerConfig.from_step_budget: total_steps={total_steps} is not a multiple of "
                f"iterations_per_epoch={per_epoch}; expected a whole number of epochs. Use {lower} or "
                f"{lower + per_epoch} steps, or an iterations_per_epoch that divides {total_steps}."
            )
        return cls(iterations_per_epoch=per_epoch, num_epochs=total_steps // per_epoch, **fields)

    def learning_rate(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): a pure function of the step.

        Args:
            step: The global step, ``0 <= step < total_steps``.
        """
        if self.lr_schedule == "per_epoch":
            progress = (step // self.iterations_per_epoch) / self.num_epochs
        else:
            progress = step / self.total_steps
        return self.initial_lr * (1.0 - min(max(progress, 0.0), 1.0)) ** self.poly_exponent

    def use_amp(self, device_type: str) -> bool:
        """Whether mixed precision is used on a device of type ``device_type`` (``"cuda"``, ``"cpu"``, ...)."""
        return device_type == "cuda" if self.amp is None else self.amp

    def to_json(self) -> dict[str, Any]:
        """Return the config as a JSON-compatible dict (every field)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainerConfig:
        """Build a config from :meth:`to_json` output; missing fields take their defaults.

        Raises:
            ConfigError: On an unknown field (with a suggestion) or an invalid value.
        """
        if not isinstance(data, dict):
            raise ConfigError(
                f"TrainerConfig.from_json: expected a JSON object of fields (a dict, as to_json writes); got a "
                f"{type(data).__name__}."
            )
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"TrainerConfig: unknown field {key!r}. {unknown_name_hint(key, names)}")
        return cls(**data)


_BOOLS = (
    "nesterov",
    "deep_supervision",
    "compile",
    "cudnn_benchmark",
    "final_validation",
    "probabilistic_oversampling",
    "replay_validation_batches",
    "save_probabilities",
    "validate_with_best",
)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainerConfig)}


def _number(name: str, value: Any, **bounds: Any) -> None:
    parse_number(_OWNER, name, value, default=_DEFAULTS[name], **bounds)
