"""``Fingerprint``: dataset statistics that drive planning, in nnU-Net's ``dataset_fingerprint.json`` form."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.errors import FingerprintError
from nnseg.fingerprint._stats import pooled_statistics

__all__ = ["CaseFingerprint", "Fingerprint", "IntensityStats"]

INTENSITY_KEYS = ("mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5")


@dataclass(frozen=True, slots=True)
class IntensityStats:
    """Statistics of the pooled foreground intensities of one channel.

    Args:
        mean: Mean of the samples.
        median: Median of the samples.
        std: Standard deviation of the samples.
        min: Smallest sample.
        max: Largest sample.
        percentile_99_5: 99.5th percentile.
        percentile_00_5: 0.5th percentile.
    """

    mean: float
    median: float
    std: float
    min: float
    max: float
    percentile_99_5: float
    percentile_00_5: float

    def to_json(self) -> dict[str, float]:
        """Return nnU-Net's per-channel dict."""
        return {key: float(getattr(self, key)) for key in INTENSITY_KEYS}

    @classmethod
    def from_samples(cls, samples: np.ndarray, *, overwrite_input: bool = False) -> IntensityStats:
        """Compute the statistics of pooled foreground samples exactly as nnU-Net does.

        The values equal NumPy's ``np.mean``, ``np.std``, ``np.min``, ``np.max`` and one ``np.percentile``
        call (linear interpolation) for the median and the 0.5 / 99.5 percentiles, on the samples in their
        own dtype (float32 for fingerprint samples); float32 samples are neither copied nor sorted (see
        :mod:`nnseg.fingerprint._stats`).

        Args:
            samples: 1-D array of intensities (at least one value); it is not modified.
            overwrite_input: Accepted for compatibility; the samples are never reordered any more.

        Raises:
            FingerprintError: If ``samples`` is empty.
        """
        del overwrite_input
        samples = np.asarray(samples).ravel()
        if samples.size == 0:
            raise FingerprintError("cannot compute intensity statistics of zero samples; expected at least one.")
        mean, median, std, low, high, p99_5, p00_5 = pooled_statistics(samples)
        return cls(mean, median, std, low, high, p99_5, p00_5)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "fingerprint") -> IntensityStats:
        """Parse nnU-Net's per-channel dict."""
        missing = [k for k in INTENSITY_KEYS if k not in data]
        if missing:
            raise FingerprintError(
                f"{where}: intensity statistics lack {missing}; expected keys {list(INTENSITY_KEYS)}."
            )
        return cls(**{key: float(data[key]) for key in INTENSITY_KEYS})


@dataclass(frozen=True, slots=True, eq=False)
class CaseFingerprint:
    """What fingerprinting learns from one case (the pooled statistics are computed over all cases).

    Args:
        spacing: Spacing in array axis order, untransposed (as read).
        shape_before_crop: Spatial shape of the case as read.
        shape_after_crop: Spatial shape after :func:`nnseg.preprocessing.crop_to_nonzero`.
        samples: ``(c, n)`` float32 foreground intensities, one row per channel; ``n`` is the requested
            number of samples, or 0 when the case has no foreground voxel.
        num_foreground_voxels: Foreground voxels (label > 0) in the cropped case.
    """

    spacing: tuple[float, ...]
    shape_before_crop: tuple[int, ...]
    shape_after_crop: tuple[int, ...]
    samples: np.ndarray
    num_foreground_voxels: int

    @property
    def relative_size_after_cropping(self) -> float:
        """Voxels after cropping divided by voxels before."""
        return float(np.prod(self.shape_after_crop, dtype=np.int64) / np.prod(self.shape_before_crop, dtype=np.int64))

    @property
    def num_channels(self) -> int:
        """Number of image channels."""
        return int(self.samples.shape[0])

    @property
    def has_foreground(self) -> bool:
        """Whether the case contributed intensity samples."""
        return self.num_foreground_voxels > 0

    def metadata_json(self) -> dict[str, Any]:
        """Return every field except the samples, as JSON-ready values."""
        return {
            "spacing": [float(v) for v in self.spacing],
            "shape_before_crop": [int(v) for v in self.shape_before_crop],
            "shape_after_crop": [int(v) for v in self.shape_after_crop],
            "num_foreground_voxels": int(self.num_foreground_voxels),
            "samples_shape": [int(v) for v in self.samples.shape],
        }

    @classmethod
    def from_metadata_json(cls, data: Mapping[str, Any], samples: np.ndarray) -> CaseFingerprint:
        """Rebuild a case fingerprint from :meth:`metadata_json` output and its samples."""
        return cls(
            spacing=tuple(float(v) for v in data["spacing"]),
            shape_before_crop=tuple(int(v) for v in data["shape_before_crop"]),
            shape_after_crop=tuple(int(v) for v in data["shape_after_crop"]),
            samples=samples,
            num_foreground_voxels=int(data["num_foreground_voxels"]),
        )


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the planner needs to know about a dataset.

    Spacings and shapes are per case, in array axis order (see :mod:`nnseg.io`), *before* any
    transposition, exactly as nnU-Net stores them.

    Args:
        spacings: One spacing per training case, sorted by case id.
        shapes_after_crop: Spatial shape of each case after cropping to the nonzero region.
        intensity_stats: One :class:`IntensityStats` per input channel (foreground voxels pooled over cases).
        median_relative_size_after_cropping: Median over cases of (voxels after crop / voxels before).
        case_ids: The case ids the lists refer to (not part of nnU-Net's file; kept when known).
    """

    spacings: tuple[tuple[float, ...], ...]
    shapes_after_crop: tuple[tuple[int, ...], ...]
    intensity_stats: tuple[IntensityStats, ...]
    median_relative_size_after_cropping: float
    case_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.spacings) != len(self.shapes_after_crop):
            raise FingerprintError(
                f"fingerprint has {len(self.spacings)} spacings but {len(self.shapes_after_crop)} shapes; "
                "expected one of each per case."
            )
        if self.case_ids is not None and len(self.case_ids) != len(self.spacings):
            raise FingerprintError(f"fingerprint has {len(self.case_ids)} case ids but {len(self.spacings)} spacings.")

    @property
    def num_cases(self) -> int:
        """Number of cases the fingerprint was computed from."""
        return len(self.spacings)

    @property
    def num_channels(self) -> int:
        """Number of input channels."""
        return len(self.intensity_stats)

    def to_json(self) -> dict[str, Any]:
        """Return the ``dataset_fingerprint.json`` content (nnU-Net keys, plus ``case_ids`` when known)."""
        data: dict[str, Any] = {
            "spacings": [[float(v) for v in s] for s in self.spacings],
            "shapes_after_crop": [[int(v) for v in s] for s in self.shapes_after_crop],
            "foreground_intensity_properties_per_channel": {
                str(i): stats.to_json() for i, stats in enumerate(self.intensity_stats)
            },
            "median_relative_size_after_cropping": float(self.median_relative_size_after_cropping),
        }
        if self.case_ids is not None:
            data["case_ids"] = list(self.case_ids)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "fingerprint") -> Fingerprint:
        """Parse a ``dataset_fingerprint.json`` content (nnU-Net's or nnseg's).

        Raises:
            FingerprintError: If a key is missing or malformed.
        """
        required = (
            "spacings",
            "shapes_after_crop",
            "foreground_intensity_properties_per_channel",
            "median_relative_size_after_cropping",
        )
        missing = [k for k in required if k not in data]
        if missing:
            raise FingerprintError(
                f"{where}: missing key(s) {missing}; expected an nnU-Net dataset_fingerprint.json with {list(required)}."
            )
        per_channel = data["foreground_intensity_properties_per_channel"]
        try:
            channels = sorted(per_channel, key=int)
            return cls(
                spacings=tuple(tuple(float(v) for v in s) for s in data["spacings"]),
                shapes_after_crop=tuple(tuple(int(v) for v in s) for s in data["shapes_after_crop"]),
                intensity_stats=tuple(IntensityStats.from_json(per_channel[c], where=f"channel {c}") for c in channels),
                median_relative_size_after_cropping=float(data["median_relative_size_after_cropping"]),
                case_ids=tuple(data["case_ids"]) if data.get("case_ids") is not None else None,
            )
        except FingerprintError as err:
            raise FingerprintError(f"{where}: {err}") from err
        except (TypeError, ValueError) as err:
            raise FingerprintError(f"{where}: malformed fingerprint ({err}).") from err

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a fingerprint JSON file (nnU-Net's ``dataset_fingerprint.json`` works too)."""
        path = Path(path)
        data = read_json_file(
            path, FingerprintError, f"fingerprint file {path} does not exist; run extract_fingerprint first."
        )
        return cls.from_json(data, where=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fingerprint JSON atomically."""
        atomic_write_json(Path(path), self.to_json())
