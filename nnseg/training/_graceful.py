"""Graceful stops of a training run: a signal becomes a stop at the next step boundary, agreed on by every rank.

On SIGTERM or SIGINT (a cluster's preemption, Ctrl-C) the step in progress finishes, ``checkpoint_latest.pt`` is
written atomically with that step (and the partial epoch's loss sum, so the resumed epoch logs the same loss),
the loader workers are stopped, and ``fit`` raises :class:`~nnseg.errors.TrainingStopped` (the CLI exits with
``128 + signal``). Under DDP the flag is summed over the ranks at every step boundary, so every rank stops at
the same step even when only one process received the signal. A second signal interrupts at once.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from nnseg._stop import StopOnSignal
from nnseg.errors import TrainingStopped
from nnseg.training._ddp import DistributedContext

__all__ = ["EpochLoss", "SignalStop", "training_stopped"]

T = TypeVar("T")


@dataclass(frozen=True)
class EpochLoss:
    """The running training-loss sum of the current epoch (kept in a mid-epoch checkpoint's ``extra``).

    Args:
        total: Sum of the losses of the epoch's steps done so far (over every rank once a stop gathered them).
        count: Number of losses summed.
    """

    total: float = 0.0
    count: int = 0

    def add(self, loss: float) -> EpochLoss:
        """With one more step's loss (summed in step order, as an uninterrupted run sums them)."""
        return EpochLoss(self.total + loss, self.count + 1)

    @property
    def mean(self) -> float:
        """The mean loss (NaN before the first step)."""
        return self.total / self.count if self.count else math.nan

    def to_extra(self) -> dict[str, Any]:
        """The checkpoint ``extra`` entries (none at an epoch boundary)."""
        return {"epoch_loss_sum": self.total, "epoch_loss_count": self.count} if self.count else {}

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], *, is_main: bool) -> EpochLoss:
        """The running sum a checkpoint's ``extra`` holds (rank 0 takes the gathered sum, the others start at 0)."""
        total, count = extra.get("epoch_loss_sum"), extra.get("epoch_loss_count")
        if not is_main or not isinstance(total, float) or not isinstance(count, int) or isinstance(count, bool):
            return cls()
        return cls(total, count)


class SignalStop:
    """SIGINT / SIGTERM handlers plus the per-step check that every rank agrees on.

    Args:
        distributed: This process's place in the run (the check is an all-reduce under DDP).
    """

    def __init__(self, distributed: DistributedContext) -> None:
        self.distributed = distributed
        self.signum: int | None = None
        self._signals = StopOnSignal("finishing the current training step and saving checkpoint_latest.pt")

    def __enter__(self) -> SignalStop:
        self._signals.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._signals.__exit__(exc_type, exc, tb)

    def requested(self) -> bool:
        """Whether any rank received a stop signal (call at every step boundary, on every rank alike)."""
        local = self._signals.signum
        if self.distributed.is_distributed:
            interrupt, terminate = self.distributed.sum([float(local == signal.SIGINT),
                                                         float(local == signal.SIGTERM)])  # fmt: skip
            local = signal.SIGTERM if terminate else signal.SIGINT if interrupt else None
        self.signum = local
        return local is not None

    def gathered(self, loss: EpochLoss) -> EpochLoss:
        """``loss`` summed over every rank (itself in a single process)."""
        total, count = self.distributed.sum([loss.total, float(loss.count)])
        return EpochLoss(total, int(count))

    def error(self, run_dir: Path, step: int, total: int) -> TrainingStopped:
        """The error to raise once rank 0 saved the checkpoint (every rank waits for it first)."""
        self.distributed.barrier()
        return training_stopped(self.signum, run_dir, step, total)

    def next_batch(self, batches: Iterator[T]) -> T | None:
        """The next batch, or None when fetching it failed after a signal (Ctrl-C also stops the loader workers)."""
        try:
            return next(batches)
        except Exception:
            if self._signals.signum is None or self.distributed.is_distributed:
                raise
            self.signum = self._signals.signum
            return None


def training_stopped(signum: int | None, run_dir: Path, step: int, total: int) -> TrainingStopped:
    """The :class:`~nnseg.errors.TrainingStopped` of a run stopped by ``signum`` (SIGTERM if unknown) after ``step``."""
    signum = int(signal.SIGTERM) if signum is None else signum
    name = signal.Signals(signum).name
    return TrainingStopped(
        f"training in {run_dir} stopped by {name} after step {step} of {total}; checkpoint_latest.pt holds that "
        "step. Run the same command (or fit on the same run folder) again to resume: the result is identical to "
        "an uninterrupted run.",
        signum, step,
    )  # fmt: skip
