"""Between a trainer's parts and a :class:`~nnseg.checkpoint.Checkpoint`: capture them into one, restore them from one.

Values in, values out: the functions take the network, optimiser, scaler and callbacks themselves, not the trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnseg.checkpoint import Checkpoint, TrainState, capture_rng_state, restore_rng_state, strip_wrapper_prefixes
from nnseg.errors import CheckpointError, ConfigError
from nnseg.training._callbacks import Callback
from nnseg.training._ddp import GLOBAL_RNG_LOCK

__all__ = ["capture_checkpoint", "restore_checkpoint"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainingParts:
    """The stateful parts of a training run that a checkpoint stores."""

    network: nn.Module
    optimizer: torch.optim.Optimizer
    grad_scaler: torch.amp.GradScaler
    callbacks: Sequence[Callback]
    world_size: int = 1


def capture_checkpoint(
    parts: TrainingParts, state: TrainState, *, lr: float, description: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Checkpoint:  # fmt: skip
    """A checkpoint of ``parts`` at ``state`` (the RNG states captured now).

    Args:
        parts: Network, optimiser, scaler, callbacks and world size.
        state: The run's progress.
        lr: The learning rate of the next step (the schedule's position).
        description: ``Trainer.describe()`` (plan, plan name, dataset spec, split, config, plans hash).
        extra: Free-form plain values (a mid-epoch stop's running loss sum).
    """
    with GLOBAL_RNG_LOCK:
        rng_state = capture_rng_state()
    return Checkpoint(
        network_weights=strip_wrapper_prefixes(parts.network.state_dict()),
        train_state=dataclasses.replace(state, rng_state=rng_state), optimizer_state=parts.optimizer.state_dict(),
        scheduler_state={"next_step": state.step, "lr": lr}, grad_scaler_state=parts.grad_scaler.state_dict(),
        callback_states=tuple(c.state_dict() for c in parts.callbacks), world_size=parts.world_size,
        extra=dict(extra or {}),
        **{key: description[key] for key in ("config", "plan", "plan_name", "dataset_spec", "split", "plans_hash")},
    )  # fmt: skip


def restore_checkpoint(parts: TrainingParts, checkpoint: Checkpoint) -> TrainState:
    """Load ``checkpoint`` into ``parts`` and the global RNGs; return its progress.

    Raises:
        CheckpointError: If its weights or optimiser state do not fit the network.
        ConfigError: If it holds the state of another number of callbacks.
    """
    try:
        # a network passed in already compiled saves its weights without "_orig_mod.": load into the module
        getattr(parts.network, "_orig_mod", parts.network).load_state_dict(checkpoint.network_weights)
        parts.optimizer.load_state_dict(dict(checkpoint.optimizer_state))
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"the checkpoint's weights do not fit the network ({str(err).splitlines()[0]}); it was written for "
            "a different network. Use a new run folder."
        ) from err
    if len(checkpoint.callback_states) != len(parts.callbacks):
        raise ConfigError(
            f"the checkpoint holds the state of {len(checkpoint.callback_states)} callback(s) but the trainer "
            f"has {len(parts.callbacks)}; resume with the same callbacks."
        )
    if checkpoint.world_size != parts.world_size:
        logger.warning(
            "resuming a run saved with %d process(es) on %d: it continues with the same global batch, but the "
            "per-rank data streams differ, so it will not equal an uninterrupted run bitwise",
            checkpoint.world_size, parts.world_size,
        )  # fmt: skip
    if checkpoint.grad_scaler_state:
        parts.grad_scaler.load_state_dict(dict(checkpoint.grad_scaler_state))
    if checkpoint.train_state.rng_state is not None:
        with GLOBAL_RNG_LOCK:
            restore_rng_state(checkpoint.train_state.rng_state)
    for callback, state in zip(parts.callbacks, checkpoint.callback_states, strict=True):
        callback.load_state_dict(dict(state))
    return checkpoint.train_state
