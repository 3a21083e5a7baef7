"""``CaseProperties`` and ``PreprocessedCase``: what preprocessing one case produces.

Axis conventions (see :mod:`nnseg.io`): arrays are ``(c, z, y, x)``. ``CaseProperties.spacing`` is the
spacing of the source files in array order *before* ``transpose_forward``; every shape and the bounding box
are given in the transposed grid, exactly like nnU-Net's per-case properties.

Class locations are keyed by strings so that they survive JSON:

* a label ``1`` is keyed ``"1"`` (``str(1)``);
* a region ``(1, 2)`` is keyed ``"(1, 2)"`` (``str((1, 2))``), and a one-label region ``(3,)`` is keyed
  ``"(3,)"``; :func:`location_key` builds them and :func:`parse_location_key` turns them back into the
  ints / tuples nnU-Net uses as dict keys;
* with an ignore label, one more key ``str((-1, *all_labels))`` (e.g. ``"(-1, 0, 1, 2, 3)"``) holds
  annotated voxels of any label, the ``-1`` outside region included.

Each value is an ``int64`` array of shape ``(N, 4)`` whose rows are ``(0, z, y, x)``: channel index 0 then
the voxel coordinates in the preprocessed (transposed, cropped, resampled) grid.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.errors import ConfigError, StoreError
from nnseg.io import ImageGeometry

__all__ = ["CaseProperties", "PreprocessedCase", "location_key", "parse_location_key"]

PROPERTIES_KEYS = (
    "spacing",
    "transpose_forward",
    "shape_before_cropping",
    "bbox_used_for_cropping",
    "shape_after_cropping_and_before_resampling",
    "shape_after_resampling",
    "target_spacing",
)


def location_key(label: int | tuple[int, ...]) -> str:
    """Return the string key of a label (``"1"``) or region (``"(1, 2)"``) in ``class_locations``."""
    if isinstance(label, tuple):
        return str(tuple(int(v) for v in label))
    return str(int(label))


def parse_location_key(key: str) -> int | tuple[int, ...]:
    """Turn a ``class_locations`` key back into nnU-Net's int or tuple.

    Raises:
        StoreError: If ``key`` is neither an int nor a tuple of ints.
    """
    try:
        value = ast.literal_eval(key)
    except (ValueError, SyntaxError) as err:
        raise StoreError(
            f"class_locations key {key!r} is not an int or a tuple of ints, e.g. '1' or '(1, 2)'."
        ) from err
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return value
    raise StoreError(f"class_locations key {key!r} is not an int or a tuple of ints, e.g. '1' or '(1, 2)'.")


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@dataclass(frozen=True, slots=True)
class CaseProperties:
    """Geometry bookkeeping of one preprocessed case, enough to map a prediction back to the source file.

    Args:
        spacing: Spacing of the source image in array order, *untransposed* (nnU-Net's ``spacing``).
        transpose_forward: Axis permutation applied to the spatial axes before cropping.
        shape_before_cropping: Spatial shape after transposition, before cropping.
        bbox_used_for_cropping: Half-open ``(start, end)`` per spatial axis, in the transposed grid.
        shape_after_cropping_and_before_resampling: Spatial shape after cropping.
        shape_after_resampling: Spatial shape of the preprocessed arrays.
        target_spacing: Spacing of the preprocessed arrays, transposed (for 2D configurations axis 0 keeps
            the original spacing).
        geometry: Geometry of the source files (origin, direction, SimpleITK spacing), or None when the
            case came from arrays without one.
    """

    spacing: tuple[float, ...]
    transpose_forward: tuple[int, ...]
    shape_before_cropping: tuple[int, ...]
    bbox_used_for_cropping: tuple[tuple[int, int], ...]
    shape_after_cropping_and_before_resampling: tuple[int, ...]
    shape_after_resampling: tuple[int, ...]
    target_spacing: tuple[float, ...]
    geometry: ImageGeometry | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "target_spacing", tuple(float(v) for v in self.target_spacing))
        for name in ("transpose_forward", "shape_before_cropping", "shape_after_cropping_and_before_resampling",
                     "shape_after_resampling"):  # fmt: skip
            object.__setattr__(self, name, _ints(getattr(self, name)))
        object.__setattr__(self, "bbox_used_for_cropping", tuple(_ints(pair) for pair in self.bbox_used_for_cropping))
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Raise ConfigError unless the shapes, box and permutation describe one case (mapping back needs it)."""
        lengths = {len(getattr(self, key)) for key in PROPERTIES_KEYS}
        problem = ""
        if len(lengths) != 1:
            problem = f"the entries have different numbers of axes {sorted(lengths)}"
        elif sorted(self.transpose_forward) != list(range(len(self.transpose_forward))):
            problem = f"transpose_forward {list(self.transpose_forward)} is not a permutation"
        elif any(pair_len != 2 for pair_len in map(len, self.bbox_used_for_cropping)) or any(
            not 0 <= lo <= hi <= size or hi - lo != cropped
            for (lo, hi), size, cropped in zip(
                self.bbox_used_for_cropping, self.shape_before_cropping, self.shape_after_cropping_and_before_resampling
            )
        ):
            problem = (
                f"bbox_used_for_cropping {[list(p) for p in self.bbox_used_for_cropping]} does not cut "
                f"shape_after_cropping_and_before_resampling {list(self.shape_after_cropping_and_before_resampling)} "
                f"out of shape_before_cropping {list(self.shape_before_cropping)}"
            )
        if problem:
            raise ConfigError(f"inconsistent case properties: {problem}; they cannot map a prediction back.")

    @property
    def transpose_backward(self) -> tuple[int, ...]:
        """The inverse of :attr:`transpose_forward`."""
        return tuple(int(i) for i in np.argsort(self.transpose_forward))

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        data: dict[str, Any] = {
            "spacing": list(self.spacing),
            "transpose_forward": list(self.transpose_forward),
            "shape_before_cropping": list(self.shape_before_cropping),
            "bbox_used_for_cropping": [list(pair) for pair in self.bbox_used_for_cropping],
            "shape_after_cropping_and_before_resampling": list(self.shape_after_cropping_and_before_resampling),
            "shape_after_resampling": list(self.shape_after_resampling),
            "target_spacing": list(self.target_spacing),
            "geometry": None if self.geometry is None else self.geometry.to_json(),
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "case properties") -> CaseProperties:
        """Parse a dict written by :meth:`to_json`.

        Raises:
            StoreError: If a key is missing or malformed.
        """
        missing = [key for key in PROPERTIES_KEYS if key not in data]
        if missing:
            raise StoreError(f"{where}: missing key(s) {missing}; expected {list(PROPERTIES_KEYS)}.")
        geometry = data.get("geometry")
        try:
            return cls(
                **{key: data[key] for key in PROPERTIES_KEYS},
                geometry=None if geometry is None else ImageGeometry.from_json(geometry),
            )
        except (TypeError, ValueError, KeyError) as err:
            raise StoreError(f"{where}: malformed case properties ({err!r}).") from err

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` atomically."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CaseProperties:
        """Read a file written by :meth:`save`.

        Raises:
            StoreError: If the file is missing, not JSON, or malformed.
        """
        path = Path(path)
        data = read_json_file(path, StoreError, f"case properties file {path} does not exist.")
        return cls.from_json(data, where=str(path))


@dataclass(frozen=True, slots=True, eq=False)
class PreprocessedCase:
    """One case after preprocessing, in memory.

    Args:
        case_id: The case id.
        data: float32 image, ``(c, z, y, x)`` in the preprocessed grid.
        seg: int8 (int16 when a value exceeds 127) label map ``(1, z, y, x)`` with -1 outside the nonzero
            region, or None when the case had no label map.
        properties: Geometry bookkeeping, see :class:`CaseProperties`.
        class_locations: Sampled foreground voxels per label / region, keyed as described in this module's
            docstring (``"1"``, ``"(1, 2)"``); each value an int64 ``(N, 4)`` array of ``(0, z, y, x)``.
            None when the case had no label map.
    """

    case_id: str
    data: np.ndarray
    seg: np.ndarray | None
    properties: CaseProperties
    class_locations: Mapping[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of the preprocessed arrays."""
        return tuple(int(v) for v in self.data.shape[1:])

    @property
    def num_channels(self) -> int:
        """Number of image channels."""
        return int(self.data.shape[0])
