"""``Fingerprint``: dataset statistics that drive planning, in nnU-Net's ``dataset_fingerprint.json`` form."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg.errors import FingerprintError

__all__ = ["Fingerprint", "IntensityStats"]

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
    def from_json(cls, data: Mapping[str, Any], *, where: str = "fingerprint") -> IntensityStats:
        """Parse nnU-Net's per-channel dict."""
        missing = [k for k in INTENSITY_KEYS if k not in data]
        if missing:
            raise FingerprintError(f"{where}: intensity statistics lack {missing}; expected keys {list(INTENSITY_KEYS)}.")
        return cls(**{key: float(data[key]) for key in INTENSITY_KEYS})


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
            raise FingerprintError(
                f"fingerprint has {len(self.case_ids)} case ids but {len(self.spacings)} spacings."
            )

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
                intensity_stats=tuple(IntensityStats.from_json(per_channel[c], where=where) for c in channels),
                median_relative_size_after_cropping=float(data["median_relative_size_after_cropping"]),
                case_ids=tuple(data["case_ids"]) if data.get("case_ids") is not None else None,
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, FingerprintError):
                raise
            raise FingerprintError(f"{where}: malformed fingerprint ({err}).") from err

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fingerprint:
        """Read a fingerprint JSON file (nnU-Net's ``dataset_fingerprint.json`` works too)."""
        path = Path(path)
        if not path.is_file():
            raise FingerprintError(f"fingerprint file {path} does not exist; run extract_fingerprint first.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise FingerprintError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}).") from err
        return cls.from_json(data, where=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fingerprint JSON atomically."""
        atomic_write_json(Path(path), self.to_json())

