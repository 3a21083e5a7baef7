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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from nnseg import _image_formats
from nnseg._atomic import atomic_write, space_problem, write_error
from nnseg._geometry import ImageGeometry
from nnseg._integrity import check_geometry, count_nonfinite, nonfinite_error, read_nifti_values, scan_nifti
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


def _check_ending(path: Path) -> None:
    if not any(path.name.endswith(ending) for ending in SUPPORTED_ENDINGS):
        raise ImageIOError(
            f"cannot handle {path}: unsupported file ending; expected one of "
            f"{', '.join(SUPPORTED_ENDINGS)} (2D also .png, .bmp, .tif; 3D .tif with a spacing sidecar). Convert the "
            "file, e.g. with SimpleITK, to NIfTI (.nii.gz)."
        )


def _check_file(path: Path) -> None:
    _check_ending(path)
    if not path.is_file():
        raise ImageIOError(f"image file {path} does not exist; expected a readable image file. Check the path.")
    if path.stat().st_size == 0:
        raise ImageIOError(f"image file {path} is empty (0 bytes); expected an image. Re-export or re-copy the file.")


def _sitk_error(path: Path, err: RuntimeError) -> ImageIOError:
    reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
    if "Refusing to change spacing" in str(err):  # ITK's refusal of a zero or NaN spacing in the header
        return ImageIOError(
            f"image file {path} has a zero or non-finite spacing (SimpleITK: {reason}); expected finite "
            "spacings > 0 mm. Fix the header (e.g. SimpleITK's SetSpacing) and re-save the file."
        )
    return ImageIOError(
        f"cannot read image file {path}: SimpleITK failed ({reason}). Check that the file is complete and not corrupt."
    )


def _read_itk(path: str | os.PathLike[str], *, scanned: bool = False) -> sitk.Image:
    path = Path(path)
    _check_file(path)
    if path.name.endswith((".nii", ".nii.gz")) and not scanned:
        scan_nifti(path)  # SimpleITK reads a truncated NIfTI, and its NaN, as zeros without a word
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise _sitk_error(path, err) from err
    check_geometry(image.GetSpacing(), image.GetDirection(), path)
    return image


_PIXEL_DTYPES = {
    sitk.sitkUInt8: np.uint8, sitk.sitkInt8: np.int8, sitk.sitkUInt16: np.uint16, sitk.sitkInt16: np.int16,
    sitk.sitkUInt32: np.uint32, sitk.sitkInt32: np.int32, sitk.sitkUInt64: np.uint64, sitk.sitkInt64: np.int64,
    sitk.sitkFloat32: np.float32, sitk.sitkFloat64: np.float64,
}  # fmt: skip


def _read_nifti(path: Path) -> tuple[np.ndarray, ImageGeometry] | None:
    """Read a NIfTI file with one decompression: values from nnseg's checked pass, geometry from SimpleITK.

    SimpleITK reads only the header here (its geometry rules stay SimpleITK's). Returns None, after the
    checks, when SimpleITK would convert the values (scaled or unusual layouts): the caller reads those
    through SimpleITK.
    """
    stored = read_nifti_values(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise _sitk_error(path, err) from err
    size = tuple(int(v) for v in reader.GetSize())
    dtype = _PIXEL_DTYPES.get(reader.GetPixelID())
    if (stored is None or stored[1] or dtype is None or reader.GetNumberOfComponents() != 1
            or reader.GetDimension() not in (2, 3) or stored[0].dtype.newbyteorder("=") != np.dtype(dtype)
            or stored[0].size != int(np.prod(size, dtype=np.int64))):  # fmt: skip
        return None
    check_geometry(reader.GetSpacing(), reader.GetDirection(), path)
    # through a one-voxel image: SimpleITK's image sets the signs of zero direction cosines its own way
    probe = sitk.Image([1] * len(size), sitk.sitkUInt8)
    probe.SetSpacing(reader.GetSpacing())
    probe.SetOrigin(reader.GetOrigin())
    probe.SetDirection(reader.GetDirection())
    geometry = ImageGeometry.from_itk(probe)
    array = stored[0].astype(dtype).reshape(size[::-1])  # a writable native copy; x varies fastest
    return (array[None] if len(size) == 2 else array), geometry


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
    nan, inf = count_nonfinite(array)  # NRRD and MetaImage keep NaN; NIfTI was checked on its stored values
    if nan or inf:
        raise nonfinite_error(path, nan, inf)
    return array[None] if image.GetDimension() == 2 else array


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, ImageGeometry]:
    """Read one single-channel image file.

    Args:
        path: Image file with one of :data:`SUPPORTED_ENDINGS`.

    Returns:
        ``(array, geometry)`` where ``array`` has shape ``(z, y, x)`` (``(1, y, x)`` for 2D) and the
        file's own dtype.

    Raises:
        ImageIOError: If the file is missing, empty, unreadable, damaged (a compressed stream that ends
            early or fails its checksum, fewer voxels than its header announces), holds NaN or infinite
            values, has a spacing that is not finite and positive or a direction that is not orthonormal,
            or is not a scalar 2D/3D image.
    """
    if _image_formats.handles(path):  # PNG, BMP, TIFF: nnseg/_image_formats.py
        return _image_formats.read_format_image(path)
    path = Path(path)
    scanned = False
    if path.name.endswith((".nii", ".nii.gz")):
        _check_file(path)
        read = _read_nifti(path)
        if read is not None:
            return read
        scanned = True
    image = _read_itk(path, scanned=scanned)
    return _to_spatial_array(image, path), ImageGeometry.from_itk(image)


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


def _verify_written(path: Path, ending: str) -> Callable[[Path], None]:
    """A readback of a freshly written temporary file; SimpleITK's NIfTI writer does not report failures."""

    def verify(tmp: Path) -> None:
        try:
            if ending in (".nii", ".nii.gz"):
                scan_nifti(tmp, check_finite=False)  # gzip CRC and length, header, every data byte
            else:
                sitk.ReadImage(str(tmp))  # NRRD and MetaImage readers refuse short files themselves
        except (ImageIOError, RuntimeError) as err:
            raise write_error(path, f"the written file does not read back: {err}") from err

    return verify


def _write_itk(array: np.ndarray, path: str | os.PathLike[str], geometry: ImageGeometry) -> None:
    path = Path(path)
    if _image_formats.handles(path):
        return _image_formats.write_format_image(array, path, geometry)
    _check_ending(path)
    image = sitk.GetImageFromArray(_spatial_for_geometry(array, geometry, path))
    image.SetSpacing(geometry.itk_spacing)
    image.SetOrigin(geometry.itk_origin)
    image.SetDirection(geometry.itk_direction)
    ending = next(e for e in SUPPORTED_ENDINGS if path.name.endswith(e))
    if not path.parent.is_dir():  # never create folders behind the caller's back
        raise ImageIOError(
            f"cannot write image file {path}: the folder {path.parent} does not exist; expected a writable folder. "
            "Create it first, or check the output path."
        )
    try:
        # a temporary name in the same folder, read back, then renamed: a file that exists is complete
        atomic_write(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=True),
                     verify=_verify_written(path, ending), suffix=f".tmp{ending}")  # fmt: skip
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reason"
        if space_problem(path) is not None:
            raise write_error(path, f"SimpleITK: {reason}") from err
        raise ImageIOError(
            f"cannot write image file {path}: SimpleITK failed ({reason}); expected a writable folder. Check that "
            f"{path.parent} exists, is writable and has free space."
        ) from err


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
