"""Intensity normalisation of one image channel, as nnU-Net v2 does it.

A channel's normalisation is chosen by its name in ``dataset.json`` (matched case-insensitively):

=====================  ============================  ==============================================
channel name           scheme (class name in plans)  formula (float32 output, ``eps = 1e-8``)
=====================  ============================  ==============================================
``ct``                 ``CTNormalization``           ``(clip(x, p0.5, p99.5) - mean) / max(std, eps)``
                                                     with the dataset's foreground statistics
``nonorm``             ``NoNormalization``           ``x``
``zscore``             ``ZScoreNormalization``       ``(x - mean(x)) / max(std(x), eps)`` per image;
                                                     with ``use_mask`` only where ``seg >= 0``
``rescale_to_0_1``     ``RescaleTo01Normalization``  ``(x - min) / max(max - min, eps)``
``rgb_to_0_1``         ``RGBTo01Normalization``      ``x / 255`` (values must lie in [0, 255])
anything else          ``ZScoreNormalization``
=====================  ============================  ==============================================

Plans store the scheme's class name; :func:`scheme_for_channel_name` and :func:`channel_name_for_scheme`
map between the two spellings, and :func:`build_normalizer` turns a scheme into a :class:`Normalizer`.
Further schemes can be added with :func:`register_normalizer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from nnseg._suggest import unknown_name_hint
from nnseg.errors import ConfigError, DatasetError, PlansError

__all__ = [
    "EPS",
    "CTNormalizer",
    "NoNormalizer",
    "Normalizer",
    "NormalizerFactory",
    "RGBTo01Normalizer",
    "RescaleTo01Normalizer",
    "ZScoreNormalizer",
    "available_schemes",
    "build_normalizer",
    "channel_name_for_scheme",
    "register_normalizer",
    "scheme_for_channel_name",
]

EPS = 1e-8
"""Smallest divisor of every normalisation (nnU-Net's value for float32 output)."""


@runtime_checkable
class Normalizer(Protocol):
    """Normalises one channel of one case.

    ``seg`` is the cropped label map of the case with ``-1`` outside the nonzero region (at inference, a map
    of 0 inside and -1 outside); normalisers that use a mask take ``seg >= 0``.
    """

    @property
    def leaves_outside_mask_at_zero(self) -> bool:
        """True if, with a mask, voxels outside stay untouched (they are 0 there). Planning uses it."""
        ...

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return the normalised float32 image (may modify ``image`` in place)."""
        ...


NormalizerFactory = Callable[[bool, Mapping[str, float]], Normalizer]
"""Builds a normaliser from ``(use_mask_for_norm, foreground intensity properties of the channel)``."""


def _as_float32(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class ZScoreNormalizer:
    """Subtract the image's mean and divide by its standard deviation (``max(std, EPS)``).

    Args:
        use_mask: Compute the statistics and normalise only where ``seg >= 0``; other voxels keep their value.
    """

    use_mask: bool = False
    leaves_outside_mask_at_zero: ClassVar[bool] = True

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return the normalised float32 image.

        Raises:
            ConfigError: If ``use_mask`` is set but no ``seg`` is given.
        """
        image = _as_float32(image)
        if not self.use_mask:
            mean, std = image.mean(), image.std()
            image -= mean
            image /= max(std, EPS)
            return image
        if seg is None:
            raise ConfigError(
                "ZScoreNormalizer(use_mask=True) needs seg (the cropped label map, -1 outside the nonzero "
                "region) to know where the image is; pass seg=..."
            )
        inside = seg >= 0
        values = image[inside]
        if values.size:
            image[inside] = (values - values.mean()) / max(values.std(), EPS)
        return image


@dataclass(frozen=True, slots=True)
class CTNormalizer:
    """Clip to the dataset's foreground percentiles, then standardise with its foreground mean and std.

    Args:
        mean: Mean of the pooled foreground intensities (before clipping).
        std: Their standard deviation.
        lower: Their 0.5th percentile.
        upper: Their 99.5th percentile.
    """

    mean: float
    std: float
    lower: float
    upper: float
    leaves_outside_mask_at_zero: ClassVar[bool] = False

    @classmethod
    def from_intensity_properties(cls, properties: Mapping[str, float]) -> CTNormalizer:
        """Build from a fingerprint's per-channel dict (``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5``).

        Raises:
            PlansError: If a statistic is missing.
        """
        keys = ("mean", "std", "percentile_00_5", "percentile_99_5")
        missing = [key for key in keys if key not in properties]
        if missing:
            raise PlansError(
                f"CT normalisation needs the foreground intensity statistics {list(keys)} of the channel; "
                f"missing {missing}. Re-plan from a fingerprint (foreground_intensity_properties_per_channel)."
            )
        return cls(
            mean=float(properties["mean"]),
            std=float(properties["std"]),
            lower=float(properties["percentile_00_5"]),
            upper=float(properties["percentile_99_5"]),
        )

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return the normalised float32 image (``seg`` is ignored)."""
        image = _as_float32(image)
        np.clip(image, self.lower, self.upper, out=image)
        image -= self.mean
        image /= max(self.std, EPS)
        return image


@dataclass(frozen=True, slots=True)
class NoNormalizer:
    """Leave the intensities as they are (only cast to float32)."""

    leaves_outside_mask_at_zero: ClassVar[bool] = False

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return ``image`` as float32."""
        return _as_float32(image)


@dataclass(frozen=True, slots=True)
class RescaleTo01Normalizer:
    """Map the image's range linearly onto [0, 1] (divisor at least ``EPS``)."""

    leaves_outside_mask_at_zero: ClassVar[bool] = False

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return the rescaled float32 image."""
        image = _as_float32(image)
        image -= image.min()
        image /= max(image.max(), np.float32(EPS))
        return image


@dataclass(frozen=True, slots=True)
class RGBTo01Normalizer:
    """Divide 8-bit colour intensities by 255."""

    leaves_outside_mask_at_zero: ClassVar[bool] = False

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        """Return ``image / 255`` as float32.

        Raises:
            DatasetError: If a value lies outside [0, 255].
        """
        low, high = float(image.min()), float(image.max())
        if low < 0 or high > 255:
            raise DatasetError(
                f"RGB normalisation ('rgb_to_0_1') expects values in [0, 255]; got values in [{low}, {high}]. "
                "Use channel name 'rescale_to_0_1' or 'zscore' for images that are not 8-bit RGB."
            )
        image = _as_float32(image)
        image /= 255.0
        return image


_FACTORIES: dict[str, NormalizerFactory] = {
    "CTNormalization": lambda use_mask, props: CTNormalizer.from_intensity_properties(props),
    "NoNormalization": lambda use_mask, props: NoNormalizer(),
    "ZScoreNormalization": lambda use_mask, props: ZScoreNormalizer(use_mask=bool(use_mask)),
    "RescaleTo01Normalization": lambda use_mask, props: RescaleTo01Normalizer(),
    "RGBTo01Normalization": lambda use_mask, props: RGBTo01Normalizer(),
}
_CHANNEL_NAMES: dict[str, str] = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}
DEFAULT_SCHEME = "ZScoreNormalization"
"""Scheme of every channel whose name is not a known key."""


def register_normalizer(scheme: str, factory: NormalizerFactory, *, channel_name: str | None = None) -> None:
    """Add (or replace) a normalisation scheme.

    Args:
        scheme: The name plans store, e.g. ``"MyNormalization"``.
        factory: Builds the normaliser from ``(use_mask_for_norm, intensity properties)``.
        channel_name: Optional channel name (matched case-insensitively) that selects this scheme.
    """
    _FACTORIES[scheme] = factory
    if channel_name is not None:
        _CHANNEL_NAMES[channel_name.casefold()] = scheme


def available_schemes() -> tuple[str, ...]:
    """Return the registered scheme names, sorted."""
    return tuple(sorted(_FACTORIES))


def scheme_for_channel_name(channel_name: str) -> str:
    """Return the scheme (class name) a channel name selects; unknown names select z-score.

    Example:
        >>> scheme_for_channel_name("CT"), scheme_for_channel_name("T2")
        ('CTNormalization', 'ZScoreNormalization')
    """
    return _CHANNEL_NAMES.get(str(channel_name).casefold(), DEFAULT_SCHEME)


def channel_name_for_scheme(scheme: str) -> str:
    """Return the canonical channel name that selects ``scheme`` (``"CTNormalization"`` -> ``"ct"``).

    Raises:
        PlansError: If no channel name selects the scheme (the message suggests close names).
    """
    resolved = _resolve_scheme(scheme)
    for name, value in _CHANNEL_NAMES.items():
        if value == resolved:
            return name
    raise PlansError(f"no channel name selects the normalisation scheme {scheme!r}; register one with channel_name=.")


def _resolve_scheme(scheme: str) -> str:
    """Accept a class name in any case, or a channel-name key; return the registered class name."""
    if scheme in _FACTORIES:
        return scheme
    by_lower = {name.casefold(): name for name in _FACTORIES}
    key = str(scheme).casefold()
    if key in by_lower:
        return by_lower[key]
    if key in _CHANNEL_NAMES:
        return _CHANNEL_NAMES[key]
    raise PlansError(
        f"unknown normalisation scheme {scheme!r} in the plans. "
        f"{unknown_name_hint(str(scheme), list(_FACTORIES) + list(_CHANNEL_NAMES))} "
        "Register custom schemes with nnseg.preprocessing register_normalizer()."
    )


def build_normalizer(
    scheme: str, *, use_mask_for_norm: bool = False, intensity_properties: Mapping[str, Any] | None = None
) -> Normalizer:
    """Build the normaliser of one channel.

    Args:
        scheme: Class name as stored in plans (``"CTNormalization"``), case-insensitive, or a channel-name
            key (``"ct"``, ``"zscore"``).
        use_mask_for_norm: The channel's ``use_mask_for_norm`` flag from the plans.
        intensity_properties: The channel's fingerprint statistics (needed by CT normalisation).

    Returns:
        A :class:`Normalizer`.

    Raises:
        PlansError: If the scheme is unknown (did-you-mean message) or lacks its statistics.
    """
    factory = _FACTORIES[_resolve_scheme(scheme)]
    return factory(bool(use_mask_for_norm), dict(intensity_properties or {}))
