"""One synthetic case in memory: a label map of blobs and CT-like or MR-like intensities that follow it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnseg._checks import parse_choice, parse_int, parse_number
from nnseg.errors import ConfigError
from nnseg.testing._blobs import paint_labels, sample_layout

__all__ = [
    "MAX_CLASSES",
    "MIN_EXTENT",
    "channel_names",
    "check_lesion_scale",
    "label_names",
    "make_synthetic_case",
]

MIN_EXTENT = 8
"""Smallest allowed number of voxels along a spatial axis."""
MAX_CLASSES = 10
"""Largest ``num_classes`` (background included): more structures do not fit in the body."""
LAYOUT_ATTEMPTS = 16
LESION_SCALE_RANGE = (0.5, 2.5)
"""Allowed factors on the lesion's size (larger ones would no longer fit inside the organ)."""

AIR_HU = -1000.0
TISSUE_HU = 40.0
CT_CLASS_HU = (120.0, 230.0, -110.0, 330.0, 450.0, -250.0, 570.0, 690.0, -390.0)
"""Mean intensity of labels 1, 2, ... in the first CT channel."""
CT_PHASE_GAIN = (1.0, 0.55, 1.35, 0.8)
"""Per channel, how strongly the structures stand out from soft tissue (e.g. contrast phases)."""
MR_CLASS_CONTRAST = (1.8, 3.0, 0.45, 2.4, 0.7, 3.6, 0.3, 1.4, 4.4)
"""Intensity of labels 1, 2, ... relative to soft tissue (1.0) in the first MR channel."""
MR_CHANNEL_EXPONENT = (1.0, -1.0, 0.7, -0.7)
"""Per channel, the contrast is raised to this power: negative exponents invert it (ADC-like)."""
MR_CHANNEL_NAMES = ("T2", "ADC", "T1", "FLAIR", "DWI")
MR_SCALE_RANGE = (50.0, 3000.0)

MODALITIES = ("ct", "mr")


def label_names(num_classes: int) -> tuple[str, ...]:
    """Names of the labels ``0 .. num_classes - 1``: background, organ, lesion, structure3, ..."""
    return ("background", "organ", "lesion", *(f"structure{k}" for k in range(3, num_classes)))[:num_classes]


def channel_names(modality: str, num_channels: int) -> tuple[str, ...]:
    """Channel names for ``dataset.json``: ``"CT"`` for every CT channel, MR sequence names otherwise."""
    if modality == "ct":
        return ("CT",) * num_channels
    return tuple(MR_CHANNEL_NAMES[c] if c < len(MR_CHANNEL_NAMES) else f"MR{c}" for c in range(num_channels))


def check_modality(caller: str, modality: Any) -> str:
    """Return the lower-cased modality, or raise ConfigError."""
    return parse_choice(caller, "modality", modality.lower() if isinstance(modality, str) else modality, MODALITIES)


def check_shape(caller: str, shape: Any, lengths: Sequence[int]) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints, each >= MIN_EXTENT, with an allowed length."""
    allowed = " or ".join(str(n) for n in lengths)
    if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) not in lengths:
        raise ConfigError(
            f"{caller}: shape must be a sequence of {allowed} ints in array order (z, y, x); got {shape!r}."
        )
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < MIN_EXTENT:
            raise ConfigError(
                f"{caller}: every entry of shape must be an int >= {MIN_EXTENT} (voxels); got shape {tuple(shape)!r}. "
                f"Use at least {MIN_EXTENT} voxels per axis so that the structures fit."
            )
    return tuple(int(n) for n in shape)


def make_synthetic_case(
    shape: Sequence[int] = (32, 48, 48),
    *,
    modality: str = "ct",
    num_channels: int = 1,
    num_classes: int = 3,
    seed: int | Sequence[int] = 0,
    lesion_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic case in memory.

    The body is an ellipsoid that does not fill the box. Label 1 is a large organ, label 2 (when
    ``num_classes >= 3``) a small lesion inside it (about a hundred voxels at the default shape), labels
    3, 4, ... medium-sized blobs elsewhere in the body. Every label is present. Each label has its own
    intensity, so a small network learns the segmentation quickly.

    * ``"ct"``: Hounsfield-like values, rounded to integers: air around -1000 outside the body (no exact
      zeros anywhere, so cropping to nonzero keeps the whole image), soft tissue around 40, each structure
      its own range, Gaussian noise. Further channels are like other contrast phases.
    * ``"mr"``: an arbitrary intensity scale per case and channel, a smooth multiplicative bias field,
      noise inside the body and exactly zero outside it. Further channels share the anatomy with a
      different (partly inverted) contrast.

    Args:
        shape: Spatial shape in array order: ``(z, y, x)``, or ``(y, x)`` for a 2D case.
        modality: ``"ct"`` or ``"mr"``.
        num_channels: Number of image channels.
        num_classes: Number of labels including background (2 to 10).
        seed: Seed or sequence of ints for :func:`numpy.random.default_rng`; the same arguments always
            give the same arrays. Case ``i`` of :func:`make_synthetic_dataset` is this function applied to
            that case's shape with ``seed=(seed, i)``.
        lesion_scale: Factor on the lesion's semi-axes, in [0.5, 2.5]; 1.0 (the default) gives the
            small lesion described above, 1.8 one about six times its volume that a small network
            learns within a few hundred training steps (the demo uses it).

    Returns:
        ``(image, label)``: ``image`` float32 of shape ``(c, z, y, x)`` and ``label`` uint8 of shape
        ``(1, z, y, x)``; a 2D case gives ``(c, 1, y, x)`` and ``(1, 1, y, x)`` (the axis convention of
        :mod:`nnseg.io`).

    Raises:
        ConfigError: If an argument is out of range.
    """
    caller = "make_synthetic_case"
    spatial = check_shape(caller, shape, (2, 3))
    modality = check_modality(caller, modality)
    num_channels = parse_int(caller, "num_channels", num_channels, minimum=1)
    num_classes = parse_int(caller, "num_classes", num_classes, minimum=2, maximum=MAX_CLASSES)
    entropy = list(seed) if isinstance(seed, Sequence) and not isinstance(seed, str) else [seed]
    for value in entropy:
        parse_int(caller, "seed", value, minimum=0)
    rng = np.random.default_rng(entropy)
    lesion_scale = check_lesion_scale(caller, lesion_scale)
    body, labels = _draw_labels(spatial, num_classes, rng, lesion_scale)
    region = np.where(labels > 0, labels.astype(np.intp) + 1, body.astype(np.intp))
    make_channel = _ct_channel if modality == "ct" else _mr_channel
    image = np.stack([make_channel(region, c, num_classes, rng) for c in range(num_channels)])
    if len(spatial) == 2:
        return image[:, None], labels[None, None]
    return image, labels[None]


def check_lesion_scale(caller: str, value: Any) -> float:
    """Return ``value`` as a float if it is a number in [0.5, 2.5], else raise ConfigError."""
    low, high = LESION_SCALE_RANGE
    return parse_number(caller, "lesion_scale", value, low=low, high=high, default=1.0)


def _draw_labels(
    shape: tuple[int, ...], num_classes: int, rng: np.random.Generator, lesion_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Draw layouts until every label is visible (almost always the first one)."""
    for _ in range(LAYOUT_ATTEMPTS):
        body, labels = paint_labels(sample_layout(shape, num_classes, rng, lesion_scale=lesion_scale), shape)
        if np.bincount(labels.ravel(), minlength=num_classes).astype(bool).all():
            return body, labels
    raise ConfigError(
        f"make_synthetic_case: could not fit {num_classes - 1} visible structures into shape {shape}; "
        "use a larger shape or fewer classes."
    )


def _ct_channel(region: np.ndarray, channel: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """CT intensities: look up each region's mean, add noise, round, and avoid exact zeros."""
    gain = CT_PHASE_GAIN[channel % len(CT_PHASE_GAIN)]
    lut = np.empty(num_classes + 1, dtype=np.float32)
    lut[0], lut[1] = AIR_HU, TISSUE_HU
    for k in range(1, num_classes):
        lut[k + 1] = TISSUE_HU + (CT_CLASS_HU[k - 1] - TISSUE_HU) * gain + rng.uniform(-15.0, 15.0)
    noise_std = np.float32(rng.uniform(10.0, 20.0))
    image = np.rint(lut[region] + noise_std * rng.standard_normal(region.shape, dtype=np.float32))
    image[image == 0.0] = 1.0
    return image


def _mr_channel(region: np.ndarray, channel: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """MR intensities: contrast times bias field plus noise, at a random scale; zero outside the body."""
    exponent = MR_CHANNEL_EXPONENT[channel % len(MR_CHANNEL_EXPONENT)]
    lut = np.empty(num_classes + 1, dtype=np.float32)
    lut[0], lut[1] = 0.0, 1.0
    for k in range(1, num_classes):
        lut[k + 1] = MR_CLASS_CONTRAST[k - 1] ** exponent * rng.uniform(0.93, 1.07)
    scale = np.float32(math.exp(rng.uniform(*np.log(MR_SCALE_RANGE))))
    noise_std = np.float32(rng.uniform(0.03, 0.07))
    bias = _bias_field(region.shape, rng)
    image = lut[region] * bias + noise_std * rng.standard_normal(region.shape, dtype=np.float32)
    image = np.maximum(image, np.float32(0.02)) * scale
    image[region == 0] = 0.0
    return image


def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth positive field: exp of a random polynomial of degree 2 in coordinates scaled to [-1, 1]."""
    ndim = len(shape)
    coords = [
        np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape([n if a == i else 1 for a in range(ndim)])
        for i, n in enumerate(shape)
    ]
    log_field = np.zeros((1,) * ndim, dtype=np.float32)
    for i in range(ndim):
        log_field = log_field + np.float32(rng.normal(0.0, 0.15)) * coords[i]
        for j in range(i, ndim):
            log_field = log_field + np.float32(rng.normal(0.0, 0.1)) * coords[i] * coords[j]
    return np.exp(log_field)
