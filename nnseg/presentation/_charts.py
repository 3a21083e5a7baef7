"""Training curves from the lines of ``metrics.jsonl``, drawn with matplotlib's object API."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["training_curves_png"]


def _series(metrics: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    values = []
    for line in metrics:
        try:
            values.append(float(line.get(key, math.nan)))
        except (TypeError, ValueError):
            values.append(math.nan)
    return values


def training_curves_png(metrics: Sequence[Mapping[str, Any]], label_names: Mapping[str, str]) -> bytes:
    """Four panels against the training step: losses, pseudo-Dice (mean, EMA, per label), learning rate, step time.

    Args:
        metrics: One mapping per epoch with the keys MetricsLog writes (``step``, ``train_loss``, ``val_loss``,
            ``pseudo_dice``, ``ema_pseudo_dice``, ``pseudo_dice_per_class``, ``lr``, ``seconds_per_step``).
        label_names: Names of the per-class entries, in order.

    Returns:
        The figure as PNG bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = _series(metrics, "step")
    figure = Figure(figsize=(11, 6.5), dpi=90)
    FigureCanvasAgg(figure)
    (loss_ax, dice_ax), (lr_ax, time_ax) = figure.subplots(2, 2)
    loss_ax.plot(steps, _series(metrics, "train_loss"), "b-o", markersize=3, label="train loss")
    loss_ax.plot(steps, _series(metrics, "val_loss"), "r-o", markersize=3, label="validation loss")
    loss_ax.set_title("loss")
    dice_ax.plot(steps, _series(metrics, "pseudo_dice"), "g:o", markersize=3, label="pseudo-Dice")
    dice_ax.plot(steps, _series(metrics, "ema_pseudo_dice"), "g-", linewidth=2, label="pseudo-Dice (EMA)")
    names = list(label_names.values())
    per_class = [line.get("pseudo_dice_per_class") or [] for line in metrics]
    for k in range(max((len(p) for p in per_class), default=0)):
        values = [float(p[k]) if k < len(p) and p[k] is not None else math.nan for p in per_class]
        dice_ax.plot(steps, values, "--", linewidth=1, label=names[k] if k < len(names) else f"class {k + 1}")
    dice_ax.set_ylim(-0.02, 1.02)
    dice_ax.set_title("validation pseudo-Dice")
    lr_ax.plot(steps, _series(metrics, "lr"), "k-")
    lr_ax.set_title("learning rate")
    time_ax.plot(steps, _series(metrics, "seconds_per_step"), "m-o", markersize=3)
    time_ax.set_title("seconds per step")
    for ax in (loss_ax, dice_ax, lr_ax, time_ax):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    dice_ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
