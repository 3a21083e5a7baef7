"""nnU-Net v2's default training augmentation as one frozen :class:`AugmentationConfig` and a pure pipeline.

Order (each step with its probability per sample): rotation / scaling on the enlarged patch and a centred
crop to the final patch, Gaussian noise, blur, brightness, contrast, simulated low resolution, inverted
gamma, gamma, mirroring; then :func:`make_targets`: masking of ``use_mask_for_norm`` channels outside the
case (training only: like nnU-Net, the validation loader runs it with ``mask_channels=()``), ``-1 -> 0``,
region conversion, deep-supervision targets.

Every random draw comes from the numpy ``Generator`` passed in, so a sample is a pure function of its
input and that generator. Switch a transform off with ``dataclasses.replace(config, p_blur=0.0)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from nnseg._checks import parse_number
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.planning import ConfigurationPlan
from nnseg.training import _augment_intensity as intensity
from nnseg.training._augment_spatial import initial_patch_size, spatial_transform

__all__ = ["AugmentationConfig", "augment_sample", "deep_supervision_scales", "make_targets"]

_RANGES = ("scaling_range", "noise_std_range", "blur_sigma_range", "brightness_range", "contrast_range",
           "low_resolution_range", "gamma_range")  # fmt: skip


@dataclass(frozen=True, slots=True)
class AugmentationConfig:
    """Every transform and probability of the training augmentation (defaults: nnU-Net v2's 3-D pipeline).

    Build the one matching a configuration with :meth:`for_plan`; change one number with
    ``dataclasses.replace``. Probabilities are per sample unless named ``..._per_channel`` / ``..._per_axis``.

    Args:
        rotation: Largest absolute rotation angle in radians per rotation axis (3 entries in 3-D, or one used
            on every axis; in 2-D and dummy 2-D only the last is used).
        dummy_2d: Augment a 3-D patch slice by slice (nnU-Net does so when ``max(patch) / patch[0] > 3``).
        p_rotation: Probability of rotating.
        p_scaling: Probability of zooming by a factor from ``scaling_range`` (the same on all axes).
        scaling_range: Zoom factors; > 1 samples a larger region.
        p_noise: Probability of Gaussian noise with a std from ``noise_std_range``.
        noise_std_range: Range of the noise standard deviation.
        p_blur: Probability of Gaussian blur.
        blur_sigma_range: Range of the blur sigma (drawn per axis and channel).
        p_blur_per_channel: Probability that a channel is blurred when blur runs.
        p_brightness: Probability of multiplicative brightness.
        brightness_range: Factor range (drawn per channel, half below and half above 1).
        p_contrast: Probability of a contrast change.
        contrast_range: Factor range (as brightness).
        p_low_resolution: Probability of simulated low resolution.
        low_resolution_range: Zoom range of the downsampling.
        p_low_resolution_per_channel: Probability per channel when it runs.
        p_gamma_inverted: Probability of gamma on the inverted image.
        p_gamma: Probability of gamma.
        gamma_range: Range of gamma (half below and half above 1).
        mirror_axes: Spatial axes that may be flipped.
        p_mirror_per_axis: Probability of flipping each of them.
        mask_channels: Channels set to 0 where the label is -1 (``use_mask_for_norm``).
        regions: Region-based training: one tuple of labels per output channel (``spec.foreground_regions``).
        ignore_label: The dataset's ignore label (appended as the last region channel for regions).
        deep_supervision_scales: One zoom per network output, highest resolution first; None gives one target.

    Raises:
        ConfigError: If a probability is outside [0, 1], a range is reversed, ``rotation`` is not 1 or 3 angles
            in [0, pi], a mirror axis is outside 0..2 or a mask channel is negative.
    """

    rotation: tuple[float, ...] = (math.pi / 6,) * 3
    dummy_2d: bool = False
    p_rotation: float = 0.2
    p_scaling: float = 0.2
    scaling_range: tuple[float, float] = (0.7, 1.4)
    p_noise: float = 0.1
    noise_std_range: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    p_blur_per_channel: float = 0.5
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_low_resolution: float = 0.25
    low_resolution_range: tuple[float, float] = (0.5, 1.0)
    p_low_resolution_per_channel: float = 0.5
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    p_mirror_per_axis: float = 0.5
    mask_channels: tuple[int, ...] = ()
    regions: tuple[tuple[int, ...], ...] | None = None
    ignore_label: int | None = None
    deep_supervision_scales: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.startswith("p_"):
                parse_number("AugmentationConfig", item.name, value, low=0.0, high=1.0, default=item.default)
            if item.name in _RANGES and (len(value) != 2 or float(value[0]) > float(value[1])):
                raise ConfigError(
                    f"AugmentationConfig.{item.name} must be (low, high) with low <= high; got {value!r}."
                )
        if len(self.rotation) not in (1, 3) or not all(0.0 <= float(a) <= math.pi for a in self.rotation):
            raise ConfigError(f"AugmentationConfig.rotation must hold 1 (2-D) or 3 (3-D) largest angles in radians, "
                              f"each in [0, pi]; got {self.rotation!r}.")  # fmt: skip
        for name, top in (("mirror_axes", 2), ("mask_channels", None)):
            values = getattr(self, name)
            if any(int(v) < 0 or (top is not None and int(v) > top) for v in values):
                raise ConfigError(f"AugmentationConfig.{name} must hold spatial axes 0..2 (mirror_axes) or "
                                  f"channel indices >= 0 (mask_channels); got {name}={values!r}.")  # fmt: skip

    @classmethod
    def for_plan(
        cls, plan: ConfigurationPlan, spec: DatasetSpec, *, deep_supervision: bool = True
    ) -> AugmentationConfig:
        """Return nnU-Net's settings for a configuration: rotation range, dummy 2-D, mirror axes, masks, targets.

        3-D: +-30 degrees, or +-180 degrees slice-wise when ``max(patch) / patch[0] > 3`` (dummy 2-D);
        mirror axes (0, 1, 2). 2-D: +-15 degrees when ``max(patch) / min(patch) > 1.5``, else +-180; axes (0, 1).
        """
        patch = plan.patch_size
        rotation: tuple[float, ...]
        mirror: tuple[int, ...]
        if len(patch) == 2:
            angle = math.radians(15) if max(patch) / min(patch) > 1.5 else math.pi
            rotation, dummy, mirror = (angle,), False, (0, 1)
        else:
            dummy = max(patch) / patch[0] > 3
            rotation, mirror = ((math.pi,) * 3 if dummy else (math.pi / 6,) * 3), (0, 1, 2)
        scales = deep_supervision_scales(plan) if deep_supervision else None
        return cls(
            rotation=rotation, dummy_2d=dummy, mirror_axes=mirror,
            mask_channels=tuple(i for i, flag in enumerate(plan.use_mask_for_norm) if flag),
            regions=spec.foreground_regions if spec.has_regions else None,
            ignore_label=spec.ignore_label, deep_supervision_scales=scales,
        )  # fmt: skip

    @property
    def spatial(self) -> bool:
        """Whether rotation or scaling can happen (then an enlarged patch is cropped)."""
        return self.p_rotation > 0 or self.p_scaling > 0

    def initial_patch_size(self, patch_size: Sequence[int]) -> tuple[int, ...]:
        """The patch to crop before augmentation: enlarged for rotation and scaling, else ``patch_size``."""
        if not self.spatial:
            return tuple(int(p) for p in patch_size)
        rotation = self.rotation[-1:] if len(patch_size) == 2 else (self.rotation * 3)[-3:]
        rotation = rotation if self.p_rotation > 0 else (0.0,) * len(rotation)
        return initial_patch_size(patch_size, rotation, dummy_2d=self.dummy_2d and len(patch_size) == 3)


def deep_supervision_scales(plan: ConfigurationPlan) -> tuple[tuple[float, ...], ...]:
    """``1 / cumprod(strides)`` per stage except the lowest: one zoom per deep-supervision output."""
    strides = plan.architecture.arch_kwargs.get("strides")
    if not strides:
        raise ConfigError(f"configuration {plan.name!r}: architecture arch_kwargs has no 'strides'; cannot derive "
                          "deep-supervision scales. Pass deep_supervision=False or fix the plans.")  # fmt: skip
    ndim = len(plan.patch_size)
    steps = [[s] * ndim if isinstance(s, int) else [int(v) for v in s] for s in strides]
    cumulative = np.cumprod(np.asarray(steps, dtype=float), axis=0)
    return tuple(tuple(float(v) for v in 1.0 / row) for row in cumulative[:-1])


def _draw_spatial(
    config: AugmentationConfig, ndim: int, rng: np.random.Generator
) -> tuple[list[float] | None, float | None]:
    angles = None
    if rng.random() < config.p_rotation:
        limits = config.rotation[-1:] if ndim == 2 else (config.rotation * 3)[-3:]
        angles = [float(rng.uniform(-a, a)) for a in limits]
    scale = float(rng.uniform(*config.scaling_range)) if rng.random() < config.p_scaling else None
    return angles, scale


def _spatial(
    data: torch.Tensor, seg: torch.Tensor, patch: Sequence[int], config: AugmentationConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    dummy = config.dummy_2d and len(patch) == 3
    if dummy:  # fold the slice axis into the channels and work in 2-D
        channels, slices = data.shape[0], data.shape[1]
        data, seg = data.reshape(-1, *data.shape[2:]), seg.reshape(-1, *seg.shape[2:])
    out = tuple(patch[1:]) if dummy else tuple(patch)
    angles, scale = _draw_spatial(config, len(out), rng)
    data, seg = spatial_transform(data, seg, out, angles, scale)
    if dummy:
        data, seg = data.reshape(channels, slices, *out), seg.reshape(-1, slices, *out)  # -1: cascade labels
    return data, seg


def _intensity(x: torch.Tensor, config: AugmentationConfig, rng: np.random.Generator) -> torch.Tensor:
    c = config
    if rng.random() < c.p_noise:
        x = intensity.gaussian_noise(x, rng, c.noise_std_range)
    if rng.random() < c.p_blur:
        x = intensity.blur(x, rng, c.blur_sigma_range, c.p_blur_per_channel)
    if rng.random() < c.p_brightness:
        x = intensity.brightness(x, rng, c.brightness_range)
    if rng.random() < c.p_contrast:
        x = intensity.contrast(x, rng, c.contrast_range)
    if rng.random() < c.p_low_resolution:
        keep = (0,) if c.dummy_2d and x.ndim == 4 else ()
        x = intensity.simulate_low_resolution(x, rng, c.low_resolution_range, c.p_low_resolution_per_channel, keep)
    if rng.random() < c.p_gamma_inverted:
        x = intensity.gamma(x, rng, c.gamma_range, invert=True)
    if rng.random() < c.p_gamma:
        x = intensity.gamma(x, rng, c.gamma_range)
    return x


def augment_sample(
    data: np.ndarray, seg: np.ndarray, patch_size: Sequence[int], config: AugmentationConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one cropped sample and cut it to ``patch_size``.

    Args:
        data: float32 ``(c, *initial_patch)``.
        seg: int16 ``(1, *initial_patch)``, -1 outside the case.
        patch_size: The final patch.
        config: The transforms.
        rng: The sample's generator (the only source of randomness).

    Returns:
        float32 data ``(c, *patch_size)`` and int16 labels ``(1, *patch_size)`` (-1 still present).
    """
    source = torch.from_numpy(np.ascontiguousarray(data, np.float32))
    x, s = _spatial(source, torch.from_numpy(np.ascontiguousarray(seg, np.int16)), patch_size, config, rng)
    x = x.clone() if x.data_ptr() == source.data_ptr() else x.contiguous()  # never modify the caller's array
    x = _intensity(x, config, rng)
    flips = [
        axis + 1 for axis in config.mirror_axes if axis < len(patch_size) and rng.random() < config.p_mirror_per_axis
    ]
    if flips:
        x, s = torch.flip(x, flips), torch.flip(s, flips)
    return x.contiguous(), s.contiguous()


@functools.lru_cache(maxsize=256)
def _nearest_exact_index(size_in: int, size_out: int) -> slice | torch.Tensor:
    """The input index of each output position of ``F.interpolate(..., mode="nearest-exact")`` along one axis.

    Taken from torch itself (interpolating an ``arange``), so the selection is exactly torch's; a slice when
    the indices are evenly spaced (the usual stride-2 case), which makes the selection a view.
    """
    positions = torch.arange(size_in, dtype=torch.float32)[None, None]
    index = F.interpolate(positions, size=size_out, mode="nearest-exact")[0, 0].to(torch.int64)
    steps = torch.unique(index[1:] - index[:-1])
    if size_out == 1 or (len(steps) == 1 and int(steps[0]) > 0):
        step = 1 if size_out == 1 else int(steps[0])
        return slice(int(index[0]), int(index[-1]) + 1, step)
    return index


def _downsample(target: torch.Tensor, scale: Sequence[float]) -> torch.Tensor:
    """Nearest-exact zoom of an integer or bool ``(k, *spatial)`` map, by indexing (no float round trip)."""
    if all(v == 1.0 for v in scale):
        return target
    out = target
    for axis, (n, v) in enumerate(zip(target.shape[1:], scale), start=1):
        index = _nearest_exact_index(int(n), max(1, round(n * v)))
        if isinstance(index, slice):
            out = out[(slice(None),) * axis + (index,)]
        else:
            out = out.index_select(axis, index.to(out.device))
    return out.contiguous()


def make_targets(
    data: torch.Tensor, seg: torch.Tensor, config: AugmentationConfig
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Mask ``mask_channels`` outside the case, turn -1 into 0, convert to regions, build the target scales.

    Returns:
        The data and one target per deep-supervision output (highest resolution first): int16 ``(1, *s)``
        labels, or bool ``(R, *s)`` regions (the ignore label's mask last when there is one).
    """
    outside = seg[0] < 0
    for channel in config.mask_channels:
        data[channel][outside] = 0.0
    seg = seg.clamp(min=0)  # a new tensor: the caller's labels keep their -1
    if config.regions is not None:
        channels = [
            torch.isin(seg[0], torch.tensor(region, dtype=seg.dtype, device=seg.device)) for region in config.regions
        ]
        if config.ignore_label is not None:
            channels.append(seg[0] == config.ignore_label)
        seg = torch.stack(channels)
    scales = config.deep_supervision_scales or ((1.0,) * (seg.ndim - 1),)
    return data, tuple(_downsample(seg, scale) for scale in scales)
