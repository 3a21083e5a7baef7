"""``TensorBoardLogger``: the scalars of ``metrics.jsonl`` and a few prediction pictures, in TensorBoard.

metrics.jsonl stays the record of a run; this callback is an optional view on the same numbers. It needs the
``tensorboard`` package (``pip install 'nnseg[tensorboard]'``) unless a writer is passed in.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnseg._checks import parse_int
from nnseg.errors import ConfigError
from nnseg.training._callbacks import Callback

if TYPE_CHECKING:
    from nnseg.training._trainer import Trainer

__all__ = ["TensorBoardLogger"]

OUTLINE_COLOURS = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [67, 99, 216], [245, 130, 49], [145, 30, 180]], dtype=np.uint8
)
"""Outline colour of label k is ``OUTLINE_COLOURS[(k - 1) % 6]`` (the overlay command's first colours)."""


def _open_writer(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch ships the module, but it needs the tensorboard package
        raise ConfigError(
            f"TensorBoardLogger needs the tensorboard package, which is not installed ({err}); expected it for "
            f"logging to {log_dir}. Install it with `pip install 'nnseg[tensorboard]'`, or drop the callback "
            "(metrics.jsonl holds the same numbers)."
        ) from err
    return SummaryWriter(log_dir=str(log_dir))


def outline_picture(image: np.ndarray, prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Prediction (left) and reference (right) outlines on a 2D slice, as an RGB uint8 ``(y, 2x, 3)`` array."""
    finite = image[np.isfinite(image)]
    low, high = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
    grey = np.clip((image - low) / max(float(high - low), 1e-6) * 255.0, 0, 255).astype(np.uint8)
    panels = []
    for labels in (prediction, reference):
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        for label in (int(v) for v in np.unique(labels) if v > 0):
            mask = labels == label
            inner = mask.copy()  # a pixel is inside when its four neighbours are in the mask too
            inner[1:, :] &= mask[:-1, :]
            inner[:-1, :] &= mask[1:, :]
            inner[:, 1:] &= mask[:, :-1]
            inner[:, :-1] &= mask[:, 1:]
            rgb[mask & ~inner] = OUTLINE_COLOURS[(label - 1) % len(OUTLINE_COLOURS)]
        panels.append(rgb)
    return np.concatenate(panels, axis=1)


class TensorBoardLogger(Callback):
    """Writes every scalar of the epoch's metrics, and every ``image_every_epochs`` a validation picture.

    Args:
        log_dir: Event folder; default ``run_dir/tensorboard``.
        image_every_epochs: How often to draw the prediction of the first validation case (0: never).
        writer: Anything with ``add_scalar``, ``add_image``, ``flush`` and ``close`` (e.g. a
            ``SummaryWriter``); default a ``torch.utils.tensorboard.SummaryWriter`` opened at fit start.
    """

    def __init__(self, log_dir: str | Path | None = None, *, image_every_epochs: int = 5, writer: Any = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.image_every_epochs = parse_int("TensorBoardLogger", "image_every_epochs", image_every_epochs, minimum=0)
        self.writer = writer
        self._owns_writer = writer is None

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        """Open the writer (raises ConfigError naming the fix when tensorboard is missing)."""
        if self.writer is None:
            self.writer = _open_writer(self.log_dir or Path(run_dir) / "tensorboard")

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Log the scalars at the epoch's last step, and a picture when it is due."""
        if self.writer is None:
            return
        step = int(metrics.get("step", trainer.step))
        for key, value in metrics.items():
            if key not in ("epoch", "step") and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), step)
        names = {v: k for k, v in trainer.spec.labels.items() if isinstance(v, int)}
        for index, value in enumerate(metrics.get("pseudo_dice_per_class") or []):
            if value is not None and not math.isnan(float(value)):
                self.writer.add_scalar(f"pseudo_dice/{names.get(index + 1, index + 1)}", float(value), step)
        epoch = int(metrics.get("epoch", 0))
        if self.image_every_epochs and (epoch + 1) % self.image_every_epochs == 0 and trainer.split.val:
            self.writer.add_image("validation", self._picture(trainer), step, dataformats="HWC")
        self.writer.flush()

    def _picture(self, trainer: Trainer) -> np.ndarray:
        from nnseg.inference import predict_logits
        from nnseg.training._final_validation import FullResolution

        case = trainer.store.read_case(trainer.split.val[0])
        was_training = trainer.network.training
        model = FullResolution(trainer.network).eval()
        try:
            with torch.no_grad():
                logits = predict_logits(model, case.data, trainer.plan.patch_size, trainer.spec.num_segmentation_heads,
                                        device=trainer.device)  # fmt: skip
        finally:
            trainer.network.train(was_training)
        if trainer.spec.has_regions:  # one sigmoid channel per region: paint them in order, later ones on top
            prediction = np.zeros(logits.shape[1:], np.int64)
            for k, channel in enumerate(logits.numpy()):
                prediction[channel > 0] = k + 1
        else:
            prediction = logits.argmax(0).numpy()
        reference = np.maximum(np.asarray(case.seg)[0], 0) if case.seg is not None else np.zeros_like(prediction)
        counts = np.count_nonzero(reference > 0, axis=(1, 2)) + np.count_nonzero(prediction > 0, axis=(1, 2))
        index = int(np.argmax(counts))
        return outline_picture(np.asarray(case.data[0, index], np.float32), prediction[index], reference[index])

    def on_fit_end(self, trainer: Trainer, run_dir: Path) -> None:
        """Flush and close a writer this callback opened."""
        if self.writer is not None:
            self.writer.flush()
            if self._owns_writer:
                self.writer.close()
                self.writer = None
