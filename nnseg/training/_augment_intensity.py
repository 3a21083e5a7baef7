"""Intensity augmentations on one ``(c, *spatial)`` float32 torch tensor, parameters drawn from a numpy Generator.

Each function applies its transform unconditionally (the pipeline decides whether it runs) and may modify
its input in place; it returns the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "background_contrast_factor",
    "blur",
    "brightness",
    "contrast",
    "gamma",
    "gaussian_noise",
    "simulate_low_resolution",
]


def background_contrast_factor(rng: np.random.Generator, low: float, high: float) -> float:
    """nnU-Net's ``BGContrast`` draw: half the time U(low, 1), else U(1, high) (when the range straddles 1)."""
    if low < 1.0 < high:
        return float(rng.uniform(low, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, high))
    return float(rng.uniform(low, high))


def _torch_generator(rng: np.random.Generator, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(rng.integers(0, 2**63 - 1)))


def gaussian_noise(x: torch.Tensor, rng: np.random.Generator, std_range: Sequence[float]) -> torch.Tensor:
    """Add zero-mean noise; one standard deviation U(std_range) for all channels, independent noise.

    The noise comes from a torch generator on ``x``'s device seeded from ``rng`` (the same numbers on the CPU).
    """
    std = float(rng.uniform(std_range[0], std_range[1]))
    if std > 0:
        generator = _torch_generator(rng, x.device)
        x += torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) * std
    return x


def _blur_axis(x: torch.Tensor, axis: int, sigma: float) -> torch.Tensor:
    """Blur a ``(*spatial)`` tensor along one axis with a separable Gaussian (reflect padding)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1).to(x.device)
    moved = x.movedim(axis, -1)
    rows = moved.reshape(-1, 1, moved.shape[-1])
    mode = "reflect" if moved.shape[-1] > radius else "replicate"
    padded = F.pad(rows, (radius, radius), mode=mode)
    # A chain of fused multiply-adds over shifted views: bit-identical to F.conv1d(padded, kernel) (a test pins
    # it) and ~20x faster, because conv1d with one channel and many short rows takes a slow path on CPU.
    size = rows.shape[-1]
    out = padded[..., :size] * kernel[0, 0, 0]
    for tap in range(1, 2 * radius + 1):
        out.addcmul_(padded[..., tap : tap + size], kernel[0, 0, tap])
    return out.reshape(moved.shape).movedim(-1, axis)


def blur(x: torch.Tensor, rng: np.random.Generator, sigma_range: Sequence[float], p_per_channel: float) -> torch.Tensor:
    """Gaussian blur, each channel with probability ``p_per_channel``, sigma U(sigma_range) per axis."""
    for channel in range(x.shape[0]):
        if rng.random() >= p_per_channel:
            continue
        image = x[channel]
        for axis in range(image.ndim):
            image = _blur_axis(image, axis, float(rng.uniform(sigma_range[0], sigma_range[1])))
        x[channel] = image
    return x


def brightness(x: torch.Tensor, rng: np.random.Generator, factor_range: Sequence[float]) -> torch.Tensor:
    """Multiply each channel by its own ``BGContrast`` factor."""
    for channel in range(x.shape[0]):
        x[channel] *= background_contrast_factor(rng, factor_range[0], factor_range[1])
    return x


def contrast(x: torch.Tensor, rng: np.random.Generator, factor_range: Sequence[float]) -> torch.Tensor:
    """Scale each channel's deviation from its mean; clip to the channel's original range."""
    for channel in range(x.shape[0]):
        factor = background_contrast_factor(rng, factor_range[0], factor_range[1])
        image = x[channel]
        low, high, mean = image.min(), image.max(), image.mean()
        x[channel] = ((image - mean) * factor + mean).clamp_(low, high)
    return x


def simulate_low_resolution(
    x: torch.Tensor,
    rng: np.random.Generator,
    scale_range: Sequence[float],
    p_per_channel: float,
    keep_axes: Sequence[int] = (),
) -> torch.Tensor:
    """Downsample (nearest) and upsample back (linear) channels chosen with ``p_per_channel``.

    One zoom ``U(scale_range)`` per channel, the same on every axis except ``keep_axes`` (axis 0 under
    dummy 2-D), which keep their size.
    """
    spatial = tuple(x.shape[1:])
    mode = "trilinear" if len(spatial) == 3 else "bilinear"
    for channel in range(x.shape[0]):
        if rng.random() >= p_per_channel:
            continue
        zoom = float(rng.uniform(scale_range[0], scale_range[1]))
        small = [n if axis in keep_axes else max(1, round(n * zoom)) for axis, n in enumerate(spatial)]
        image = x[channel][None, None]
        down = F.interpolate(image, size=small, mode="nearest-exact")
        x[channel] = F.interpolate(down, size=spatial, mode=mode, align_corners=False)[0, 0]
    return x


def gamma(
    x: torch.Tensor, rng: np.random.Generator, gamma_range: Sequence[float], *, invert: bool = False
) -> torch.Tensor:
    """Gamma on each channel's [min, max] range with its own ``BGContrast`` gamma; mean and std restored.

    With ``invert`` the image is negated before and after (the transform then brightens dark regions).
    """
    for channel in range(x.shape[0]):
        value = background_contrast_factor(rng, gamma_range[0], gamma_range[1])
        image = -x[channel] if invert else x[channel]
        mean, std = image.mean(), image.std()
        low, span = image.min(), image.max() - image.min()
        adjusted = ((image - low) / span.clamp_min(1e-7)).pow(value) * span + low
        new_std = adjusted.std()
        if math.isfinite(float(new_std)) and float(new_std) > 1e-7:
            adjusted = (adjusted - adjusted.mean()) / new_std * std + mean
        x[channel] = -adjusted if invert else adjusted
    return x
