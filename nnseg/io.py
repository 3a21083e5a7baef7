"""Reading and writing images and label maps through SimpleITK.

The axis convention, stated once for all of nnseg:

* Arrays are **channel-first** and always have **three spatial axes**: ``(c, z, y, x)`` for a 3D image,
  i.e. the spatial axes are in NumPy order of ``SimpleITK.GetArrayFromImage`` (slowest axis first).
* A 2D image is stored as ``(c, 1, y, x)``; its first spatial axis gets a pseudo spacing of
  ``999 * max(in-plane spacing)`` so that planning treats it as one thin slice (nnU-Net's rule).
* ``ImageGeometry.spacing`` is given in that **array axis order**; the SimpleITK (x, y, z) values are
  kept separately, unchanged, so that writing restores spacing, origin and direction exactly.

This module is the only place where arrays and SimpleITK images are converted into each other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnseg.errors import ImageIOError

__all__ = [
    "SUPPORTED_ENDINGS",
    "ImageGeometry",
    "read_image",
    "read_images",
    "read_segmentation",
    "smallest_label_dtype",
    "write_image",
    "write_segmentation",
]

SUPPORTED_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".mha")
"""File endings nnseg reads and writes."""

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


def _check_ending(path: Path) -> None:
    if not any(path.name.endswith(ending) for ending in SUPPORTED_ENDINGS):
        raise ImageIOError(
            f"cannot handle {path}: unsupported file ending; expected one of "
            f"{', '.join(SUPPORTED_ENDINGS)} (2D also .png, .bmp, .tif; 3D .tif with a spacing sidecar). Convert the "
            "file, e.g. with SimpleITK, to NIfTI (.nii.gz)."
        )


def _read_itk(path: str | os.PathLike[str]) -> sitk.Image:
    path = Path(path)
    _check_ending(path)
    if not path.is_file():
        raise ImageIOError(f"image file {path} does not exist; expected a readable image file. Check the path.")
    if path.stat().st_size == 0:
        raise ImageIOError(f"image file {path} is empty (0 bytes); expected an image. Re-export or re-copy the file.")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
        raise ImageIOError(
            f"cannot read image file {path}: SimpleITK failed ({reason}). "
            "Check that the file is complete and not corrupt."
        ) from err


def _to_spatial_array(image: sitk.Image, path: Path) -> np.ndarray:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageIOError(
            f"image file {path} has {image.GetNumberOfComponentsPerPixel()} components per pixel; "
            "expected a scalar image (one file per channel, named <case>_0000, <case>_0001, ...)."
        )
    if image.GetDimension() not in (2, 3):
        raise ImageIOError(
            f"image file {path} is {image.GetDimension()}D (size {image.GetSize()}); expected a 3D (or 2D) image. "
            "nnseg reads one 3D file per image channel (<case>_0000, <case>_0001, ...) and one per label map; "
            "split the file into 3D files."
        )
    array = sitk.GetArrayFromImage(image)
    return array[None] if image.GetDimension() == 2 else array


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageGeometry]:
    """Read one single-channel image file.

    Args:
        path: Image file with one of :data:`SUPPORTED_ENDINGS`.

    Returns:
        ``(array, geometry)`` where ``array`` has shape ``(z, y, x)`` (``(1, y, x)`` for 2D) and the
        file's own dtype.

    Raises:
        ImageIOError: If the file is missing, empty, unreadable, not scalar, or not 2D/3D.
    """
    if _image_formats.handles(path):  # PNG, BMP, TIFF: nnseg/_image_formats.py
        return _image_formats.read_format_image(path)
    image = _read_itk(path)
    return _to_spatial_array(image, Path(path)), ImageGeometry.from_itk(image)


def read_images(paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, ImageGeometry]:
    """Read the channel files of one case and stack them channel-first as float32.

    Args:
        paths: One file per channel, in channel order.

    Returns:
        ``(array, geometry)`` with ``array`` of shape ``(c, z, y, x)`` in float32 and the geometry of the
        first channel.

    Raises:
        ImageIOError: If a file cannot be read or the channels differ in shape or spacing.
    """
    if not paths:
        raise ImageIOError("read_images got no paths; expected one file per channel, in channel order.")
    if any(_image_formats.handles(p) for p in paths):  # a colour file holds several channels
        return _image_formats.read_format_images(paths)
    arrays: list[np.ndarray] = []
    geometry: ImageGeometry | None = None
    for path in paths:
        array, this_geometry = read_image(path)
        if geometry is None:
            geometry = this_geometry
        elif array.shape != arrays[0].shape:
            raise ImageIOError(
                f"channel file {path} has shape {array.shape} but {paths[0]} has {arrays[0].shape}; expected "
                "every channel of a case to have the same shape. Resample the channels onto one grid; "
                "`nnseg verify RAW_DIR` lists every such case."
            )
        elif not np.allclose(this_geometry.itk_spacing, geometry.itk_spacing, rtol=1e-5, atol=0):
            raise ImageIOError(
                f"channel file {path} has spacing {this_geometry.itk_spacing} but {paths[0]} has "
                f"{geometry.itk_spacing}; expected every channel of a case to share one spacing. Resample the "
                "channels onto one grid; `nnseg verify RAW_DIR` lists every such case."
            )
        arrays.append(array.astype(np.float32, copy=False))
    if geometry is None:  # invariant: paths is non-empty
        raise ImageIOError("read_images got no paths")
    return np.stack(arrays), geometry


def read_segmentation(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageGeometry]:
    """Read a label map.

    Args:
        path: Label file with one of :data:`SUPPORTED_ENDINGS`.

    Returns:
        ``(array, geometry)`` with ``array`` of shape ``(1, z, y, x)`` (``(1, 1, y, x)`` for 2D) in the
        file's integer dtype (floating files are converted when every value is integral).

    Raises:
        ImageIOError: If the file cannot be read or holds non-integer values.
    """
    array, geometry = read_image(path)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ImageIOError(
                f"label file {path} holds non-integer values (dtype {array.dtype}); expected integer "
                "label values such as 0, 1, 2. Round or re-export the label map as an integer image."
            )
        array = array.astype(np.int32)
    return array[None], geometry


def smallest_label_dtype(max_value: int) -> np.dtype[Any]:
    """Return the smallest unsigned integer dtype that holds ``0..max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _spatial_for_geometry(array: np.ndarray, geometry: ImageGeometry, path: Path) -> np.ndarray:
    """Drop the leading singleton axis of a 2D image stored as (1, y, x)."""
    if geometry.ndim == 2:
        if array.ndim == 3 and array.shape[0] == 1:
            return array[0]
        if array.ndim == 2:
            return array
    elif array.ndim == 3:
        return array
    raise ImageIOError(
        f"cannot write {path}: array of shape {array.shape} does not match a {geometry.ndim}D geometry; "
        "expected (z, y, x) for 3D or (1, y, x) / (y, x) for 2D."
    )


def _write_itk(array: np.ndarray, path: str | os.PathLike[str], geometry: ImageGeometry) -> None:
    path = Path(path)
    if _image_formats.handles(path):
        return _image_formats.write_format_image(array, path, geometry)
    _check_ending(path)
    image = sitk.GetImageFromArray(_spatial_for_geometry(array, geometry, path))
    image.SetSpacing(geometry.itk_spacing)
    image.SetOrigin(geometry.itk_origin)
    image.SetDirection(geometry.itk_direction)
    # Write to a temporary name in the same folder, then rename: a file that exists is complete.
    ending = next(e for e in SUPPORTED_ENDINGS if path.name.endswith(e))
    tmp_path = path.with_name(f".{path.name[: -len(ending)]}.{os.getpid()}.tmp{ending}")
    try:
        sitk.WriteImage(image, str(tmp_path), useCompression=True)
        os.replace(tmp_path, path)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
        raise ImageIOError(
            f"cannot write image file {path}: SimpleITK failed ({reason}); expected a writable folder. Check that "
            f"{path.parent} exists, is writable and has free space."
        ) from err
    finally:
        tmp_path.unlink(missing_ok=True)


def write_image(array: np.ndarray, path: str | os.PathLike[str], geometry: ImageGeometry) -> None:
    """Write one single-channel image atomically with the given geometry.

    Args:
        array: ``(z, y, x)`` for a 3D geometry, ``(1, y, x)`` or ``(y, x)`` for a 2D geometry.
        path: Destination with one of :data:`SUPPORTED_ENDINGS`.
        geometry: Spacing, origin and direction to store.
    """
    _write_itk(np.asarray(array), path, geometry)


def write_segmentation(seg: np.ndarray, path: str | os.PathLike[str], geometry: ImageGeometry) -> None:
    """Write a label map atomically in the smallest sufficient unsigned integer type.

    Args:
        seg: Integer labels, ``(z, y, x)``, ``(1, z, y, x)`` or the 2D forms of :func:`write_image`.
        path: Destination with one of :data:`SUPPORTED_ENDINGS`.
        geometry: Spacing, origin and direction to store.

    Raises:
        ImageIOError: If ``seg`` holds negative values.
    """
    seg = np.asarray(seg)
    if seg.ndim == 4 and seg.shape[0] == 1:
        seg = seg[0]
    min_value = int(seg.min()) if seg.size else 0
    if min_value < 0:
        raise ImageIOError(
            f"cannot write label map {path}: it holds the negative value {min_value}; expected label values "
            ">= 0. Map negative values to valid labels before writing."
        )
    max_value = int(seg.max()) if seg.size else 0
    _write_itk(seg.astype(smallest_label_dtype(max_value), copy=False), path, geometry)


from nnseg import _image_formats  # noqa: E402  (builds on ImageGeometry above)
