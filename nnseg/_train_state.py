"""``TrainState``: the progress of a training run as one immutable value (re-exported by ``nnseg.checkpoint`` and
``nnseg.training``).

It lives in its own small module so that ``nnseg.checkpoint`` (which inference imports) does not depend on the
training package.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nnseg._checks import parse_int

__all__ = ["TrainState"]


@dataclass(frozen=True)
class TrainState:
    """The progress of a training run: one immutable value the trainer replaces as it advances.

    Args:
        step: Optimiser steps done (the loader's next step: batches are a pure function of ``(seed, step)``).
        epoch: Epochs done (validations run).
        ema_pseudo_dice: Exponential moving average of the validation pseudo-Dice (NaN before the first one).
        best_ema_pseudo_dice: Best EMA so far (``-inf`` before the first one).
        best_step: ``step`` at the end of the epoch that reached the best EMA (None: not reached yet).
        best_epoch: Index (0-based) of that epoch.
        seed: The loader's seed.
        rng_state: Python, NumPy and torch generator states (:func:`capture_rng_state`) when the state was saved.

    Example:
        >>> state = TrainState(seed=0).advanced(250).end_epoch(pseudo_dice=0.8, momentum=0.9)
        >>> state.epoch, state.best_step, state.is_best
        (1, 250, True)
    """

    step: int = 0
    epoch: int = 0
    ema_pseudo_dice: float = math.nan
    best_ema_pseudo_dice: float = -math.inf
    best_step: int | None = None
    best_epoch: int | None = None
    seed: int = 0
    rng_state: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("step", "epoch", "seed"):
            parse_int("TrainState", name, getattr(self, name), minimum=0)
        for name in ("best_step", "best_epoch"):
            if getattr(self, name) is not None:
                parse_int("TrainState", name, getattr(self, name), minimum=0)

    @property
    def next_step(self) -> int:
        """The loader position: the step whose batch comes next."""
        return self.step

    @property
    def is_best(self) -> bool:
        """Whether the last finished epoch reached the best EMA pseudo-Dice (its checkpoint is the best one)."""
        return self.best_epoch is not None and self.best_epoch == self.epoch - 1

    def advanced(self, steps: int = 1) -> TrainState:
        """The state after ``steps`` more optimiser steps."""
        return dataclasses.replace(self, step=self.step + steps)

    def end_epoch(self, pseudo_dice: float, momentum: float) -> TrainState:
        """The state after the epoch's validation: EMA (the first value as is), epoch count and best updated.

        Args:
            pseudo_dice: The epoch's mean validation pseudo-Dice (NaN without validation: the EMA stays).
            momentum: EMA momentum (``TrainerConfig.ema_momentum``).
        """
        ema = self.ema_pseudo_dice
        if not math.isnan(pseudo_dice):
            ema = pseudo_dice if math.isnan(ema) else momentum * ema + (1 - momentum) * pseudo_dice
        done = dataclasses.replace(self, epoch=self.epoch + 1, ema_pseudo_dice=ema)
        if math.isnan(ema) or ema <= self.best_ema_pseudo_dice:
            return done
        return dataclasses.replace(done, best_ema_pseudo_dice=ema, best_step=self.step, best_epoch=self.epoch)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only (safe to store in a checkpoint)."""
        return {
            "step": self.step, "epoch": self.epoch, "ema_pseudo_dice": self.ema_pseudo_dice,
            "best_ema_pseudo_dice": self.best_ema_pseudo_dice, "best_step": self.best_step,
            "best_epoch": self.best_epoch, "loader": {"seed": self.seed, "next_step": self.step},
            "rng_state": None if self.rng_state is None else dict(self.rng_state),
        }  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> TrainState:
        """Rebuild the state from :meth:`state_dict` output.

        Raises:
            ConfigError: If a value has the wrong type or range (naming it).
        """
        loader = state.get("loader") or {}
        return cls(
            step=state.get("step", 0), epoch=state.get("epoch", 0),
            ema_pseudo_dice=float(state.get("ema_pseudo_dice", math.nan)),
            best_ema_pseudo_dice=float(state.get("best_ema_pseudo_dice", -math.inf)),
            best_step=state.get("best_step"), best_epoch=state.get("best_epoch"), seed=loader.get("seed", 0),
            rng_state=state.get("rng_state"),
        )  # fmt: skip
