"""Pure array helpers for pictures: intensity windows, slice choice, and drawing outlines with a legend.

Nothing here reads or writes files. Figures are built with matplotlib's object API on an Agg canvas
(no pyplot state), so several pictures can be drawn in one process, from threads or workers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nnseg.errors import ConfigError

__all__ = [
    "CT_WINDOW",
    "LABEL_COLOURS",
    "Panel",
    "check_slice",
    "colour_of",
    "foreground_slice",
    "png_bytes",
    "render_panels",
    "window_image",
]

CT_WINDOW = (-160.0, 240.0)
"""Soft-tissue window (level 40 HU, width 400 HU) used for channels named CT."""
PERCENTILES = (0.5, 99.5)
"""Other modalities are windowed between these percentiles of the slice's intensities."""
LABEL_COLOURS = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
    "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
)  # fmt: skip
"""Outline colour of label k is ``LABEL_COLOURS[(k - 1) % len(LABEL_COLOURS)]``: distinct on grey."""
PANEL_INCHES = 4.0


@dataclass(frozen=True)
class Panel:
    """One picture of a row: a title and the 2D label map whose outlines are drawn on the image.

    Args:
        title: Text above the picture, e.g. ``"prediction"``.
        labels: Integer label map of shape ``(y, x)``, on the image's grid.
    """

    title: str
    labels: np.ndarray


def window_image(image: np.ndarray, *, ct: bool) -> np.ndarray:
    """Map intensities to [0, 1] for display.

    Args:
        image: A 2D slice (any numeric dtype).
        ct: Use the fixed soft-tissue window :data:`CT_WINDOW` (Hounsfield units) instead of percentiles.

    Returns:
        float32 array of the same shape with values in [0, 1].
    """
    values = np.asarray(image, dtype=np.float32)
    if ct:
        low, high = CT_WINDOW
    else:
        finite = values[np.isfinite(values)]
        low, high = (float(v) for v in np.percentile(finite, PERCENTILES)) if finite.size else (0.0, 1.0)
    if high <= low:  # a constant slice: show it mid-grey instead of dividing by zero
        return np.full(values.shape, 0.5, dtype=np.float32)
    return np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def foreground_slice(*label_maps: np.ndarray) -> int:
    """Index along axis 0 of the slice with the most foreground voxels summed over ``label_maps``.

    Ties go to the first such slice; without any foreground the middle slice is returned.
    """
    counts = sum(np.count_nonzero(np.asarray(m) > 0, axis=tuple(range(1, np.ndim(m)))) for m in label_maps)
    counts = np.asarray(counts)
    if counts.size == 0 or counts.max() == 0:
        return int(label_maps[0].shape[0] // 2)
    return int(np.argmax(counts))


def check_slice(index: int, depth: int, where: str) -> int:
    """Return ``index`` if it is a valid slice of an image with ``depth`` slices, else raise ConfigError."""
    if not -depth <= index < depth:
        raise ConfigError(
            f"slice {index} does not exist in {where}: it has {depth} slice(s) along the first array axis; "
            f"expected --slice in 0..{depth - 1}, or leave it out to show the slice with the most foreground."
        )
    return index % depth


def colour_of(label: int) -> str:
    """Outline colour of a label value."""
    return LABEL_COLOURS[(int(label) - 1) % len(LABEL_COLOURS)]


def render_panels(
    image: np.ndarray,
    panels: Sequence[Panel],
    *,
    label_names: Mapping[int, str],
    ct: bool,
    aspect: float = 1.0,
    title: str = "",
) -> np.ndarray:
    """Draw the windowed image once per panel with each label's outline in its colour, and a legend.

    Args:
        image: 2D slice ``(y, x)``.
        panels: One or more label maps on the slice's grid (e.g. prediction and reference).
        label_names: Name of each label value shown in the legend; unnamed values are shown as numbers.
        ct: Window for CT (see :func:`window_image`).
        aspect: Pixel height over width (spacing along y over spacing along x).
        title: Figure title, e.g. the case id and slice.

    Returns:
        The picture as an RGB uint8 array ``(height, width, 3)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    shown = window_image(image, ct=ct)
    figure = Figure(figsize=(PANEL_INCHES * len(panels), PANEL_INCHES + 0.6), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    present: set[int] = set()
    for ax, panel in zip(axes, panels):
        ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect=aspect)
        for label in (int(v) for v in np.unique(panel.labels) if v > 0):
            mask = (panel.labels == label).astype(np.float32)
            if mask.all():
                continue
            ax.contour(mask, levels=[0.5], colors=[colour_of(label)], linewidths=1.5)
            present.add(label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_axis_off()
    handles = [
        Line2D([0], [0], color=colour_of(k), linewidth=2, label=f"{k} {label_names.get(k, '')}".strip())
        for k in sorted(present)
    ]
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=9, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0.0, 0.08 if handles else 0.0, 1.0, 1.0))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, rgb, format="png")
    return buffer.getvalue()
