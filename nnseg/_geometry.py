"""``ImageGeometry``: where an image lies in physical space (spacing, origin, direction), as read from its file.

It lives in its own base module so the image readers of every format (:mod:`nnseg.io`,
:mod:`nnseg._image_formats`) share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

__all__ = ["PSEUDO_SPACING_FACTOR_2D", "ImageGeometry"]

PSEUDO_SPACING_FACTOR_2D = 999.0


@dataclass(frozen=True, slots=True)
class ImageGeometry:
    """Where an image lies in physical space, as read from its file.

    Args:
        itk_spacing: Spacing in SimpleITK order (x, y[, z]), exactly as stored in the file.
        itk_origin: Origin in SimpleITK order.
        itk_direction: Direction cosine matrix, row-major, as SimpleITK returns it.
    """

    itk_spacing: tuple[float, ...]
    itk_origin: tuple[float, ...]
    itk_direction: tuple[float, ...]

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of the file (2 or 3)."""
        return len(self.itk_spacing)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Spacing in array axis order ``(z, y, x)``; 2D files get a pseudo spacing on axis 0."""
        reversed_spacing = tuple(float(s) for s in reversed(self.itk_spacing))
        if self.ndim == 2:
            return (PSEUDO_SPACING_FACTOR_2D * max(reversed_spacing), *reversed_spacing)  # type: ignore[return-value]
        return reversed_spacing  # type: ignore[return-value]

    def to_json(self) -> dict[str, list[float]]:
        """Return a JSON-serialisable dict (exact float values)."""
        return {
            "itk_spacing": list(self.itk_spacing),
            "itk_origin": list(self.itk_origin),
            "itk_direction": list(self.itk_direction),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageGeometry:
        """Rebuild a geometry from :meth:`to_json` output."""
        return cls(
            itk_spacing=tuple(float(v) for v in data["itk_spacing"]),
            itk_origin=tuple(float(v) for v in data["itk_origin"]),
            itk_direction=tuple(float(v) for v in data["itk_direction"]),
        )

    @classmethod
    def from_itk(cls, image: sitk.Image) -> ImageGeometry:
        """Read the geometry of a SimpleITK image."""
        return cls(
            itk_spacing=tuple(float(v) for v in image.GetSpacing()),
            itk_origin=tuple(float(v) for v in image.GetOrigin()),
            itk_direction=tuple(float(v) for v in image.GetDirection()),
        )

    @classmethod
    def identity(cls, spacing: Sequence[float]) -> ImageGeometry:
        """Build a geometry with origin 0 and identity direction from an array-order spacing."""
        itk_spacing = tuple(float(s) for s in reversed(tuple(spacing)))
        ndim = len(itk_spacing)
        direction = tuple(float(v) for v in np.eye(ndim).ravel())
        return cls(itk_spacing=itk_spacing, itk_origin=(0.0,) * ndim, itk_direction=direction)
