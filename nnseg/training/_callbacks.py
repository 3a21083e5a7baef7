"""Training callbacks: a small hook interface and the default ones (metrics log, progress bar, plot, early stop).

A callback sees the trainer at the start and end of ``fit`` and after every epoch, with that epoch's metrics.
Its ``state_dict`` is stored in checkpoints, so a resumed run continues with the same callback state.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from nnseg._atomic import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from nnseg.training._trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "MetricsLog", "ProgressBar", "ProgressPlot"]

logger = logging.getLogger(__name__)


class Callback:
    """Base class of training callbacks; every hook does nothing by default."""

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        """Called once ``fit`` has built or restored everything, before the first step it runs."""

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Called after every optimiser step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Called after each epoch's validation, before its checkpoint is written."""

    def on_fit_end(self, trainer: Trainer, run_dir: Path) -> None:
        """Called after the final checkpoint."""

    def on_fit_error(self, trainer: Trainer, error: BaseException) -> None:
        """Called when ``fit`` raises (an error, Ctrl-C) after ``on_fit_start``, before the error propagates.

        Release what ``on_fit_start`` opened (files, progress bars); an exception raised here is logged, not raised.
        """

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state to keep in checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""


class MetricsLog(Callback):
    """Writes one JSON line per epoch to ``run_dir/metrics.jsonl`` (rewritten atomically each epoch)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.path: Path | None = None

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        """Remember where to write."""
        self.path = run_dir / "metrics.jsonl"

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Append the epoch's metrics."""
        self.lines.append(json.dumps(metrics, allow_nan=True))
        if self.path is not None:
            atomic_write_text(self.path, "\n".join(self.lines) + "\n")

    def state_dict(self) -> dict[str, Any]:
        """The lines written so far (so a resumed run's log has no gap and no duplicate)."""
        return {"lines": list(self.lines)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the lines."""
        self.lines = list(state.get("lines", []))


class ProgressBar(Callback):
    """A tqdm bar over all steps of the run, showing the loss and the EMA pseudo-Dice."""

    def __init__(self, *, disable: bool = False) -> None:
        self.disable = disable
        self._bar: Any = None

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        """Open the bar at the resumed step."""
        total = trainer.config.total_steps
        self._bar = tqdm(total=total, initial=trainer.step, desc="train", unit="step", disable=self.disable)

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        """Advance by one step."""
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Show the EMA pseudo-Dice."""
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", ema_dice=f"{metrics['ema_pseudo_dice']:.4f}")

    def on_fit_end(self, trainer: Trainer, run_dir: Path) -> None:
        """Close the bar."""
        self.close()

    def on_fit_error(self, trainer: Trainer, error: BaseException) -> None:
        """Close the bar (so the terminal is not left with a half-drawn one)."""
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether the bar is shown (between ``on_fit_start`` and the end of ``fit``)."""
        return self._bar is not None

    def close(self) -> None:
        """Close the bar if it is open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressPlot(Callback):
    """Redraws ``run_dir/progress.png`` each epoch: losses, pseudo-Dice and its EMA, learning rate, step time.

    Needs matplotlib; without it the callback logs one warning and does nothing.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.run_dir: Path | None = None
        self._warned = False

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        """Remember where to draw."""
        self.run_dir = run_dir

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Add the epoch and redraw."""
        self.history.append(
            {
                k: metrics[k]
                for k in ("epoch", "train_loss", "val_loss", "pseudo_dice", "ema_pseudo_dice", "lr", "seconds_per_step")
            }  # fmt: skip
        )
        if self.run_dir is not None:
            self._draw(self.run_dir / "progress.png")

    def _draw(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            from matplotlib import pyplot as plt
        except ImportError:
            if not self._warned:
                logger.warning("progress.png not drawn: matplotlib is not installed (pip install matplotlib)")
                self._warned = True
            return
        epochs = [h["epoch"] for h in self.history]
        figure, axes = plt.subplots(3, 1, figsize=(10, 12))
        axes[0].plot(epochs, [h["train_loss"] for h in self.history], label="train loss")
        axes[0].plot(epochs, [h["val_loss"] for h in self.history], label="val loss")
        twin = axes[0].twinx()
        twin.plot(epochs, [h["pseudo_dice"] for h in self.history], "g:", label="pseudo Dice")
        twin.plot(epochs, [h["ema_pseudo_dice"] for h in self.history], "g-", label="pseudo Dice (EMA)")
        axes[0].legend(loc="upper left")
        twin.legend(loc="upper right")
        axes[1].plot(epochs, [h["seconds_per_step"] for h in self.history], label="seconds per step")
        axes[1].legend()
        axes[2].plot(epochs, [h["lr"] for h in self.history], label="learning rate")
        axes[2].legend()
        axes[2].set_xlabel("epoch")
        atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
        plt.close(figure)

    def state_dict(self) -> dict[str, Any]:
        """The plotted history."""
        return {"history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the history."""
        self.history = list(state.get("history", []))


class EarlyStopping(Callback):
    """Stops training when the EMA pseudo-Dice has not improved by ``min_delta`` for ``patience`` epochs.

    Args:
        patience: Epochs without improvement before stopping.
        min_delta: Smallest increase that counts as an improvement.
    """

    def __init__(self, patience: int = 50, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = -math.inf
        self.epochs_without_improvement = 0

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Count epochs without improvement and ask the trainer to stop when patience runs out."""
        value = metrics["ema_pseudo_dice"]
        if not math.isnan(value) and value > self.best + self.min_delta:
            self.best, self.epochs_without_improvement = value, 0
        else:
            self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= self.patience:
            logger.info("early stopping after epoch %d: no improvement for %d epochs", metrics["epoch"], self.patience)
            trainer.request_stop()

    def state_dict(self) -> dict[str, Any]:
        """Best value and the count of epochs without improvement."""
        return {"best": self.best, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters."""
        self.best = float(state.get("best", -math.inf))
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))
