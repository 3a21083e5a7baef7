"""Readers and writers for 2D natural images (PNG, BMP, TIFF) and 3D TIFF stacks, beside SimpleITK's formats.

* ``.png`` and ``.bmp`` are 2D: a grey file is one channel, an RGB file three (one file may hold every
  channel of a case); the spacing is 1 and the usual 2D pseudo spacing applies (see :mod:`nnseg.io`).
* ``.tif`` / ``.tiff`` holding one 2D page is read like a PNG. A 3D stack needs its spacing in a sidecar
  ``<case>.json`` next to it, ``{"spacing": [z, y, x]}`` in array order (nnU-Net's convention); without the
  sidecar the reader refuses instead of guessing 1 mm.
* Lossy formats (``.jpg``, ``.jpeg``) are refused: compression artefacts change intensities and, in label
  maps, label values.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnseg._atomic import atomic_write, atomic_write_json
from nnseg._geometry import ImageGeometry
from nnseg.errors import ImageIOError

__all__ = ["IMAGE_FORMAT_ENDINGS", "handles", "read_format_image", "read_format_images", "write_format_image"]

IMAGE_FORMAT_ENDINGS: tuple[str, ...] = (".png", ".bmp", ".tif", ".tiff")
"""Endings read and written here rather than through SimpleITK."""
LOSSY_ENDINGS = (".jpg", ".jpeg")
TIFF_ENDINGS = (".tif", ".tiff")
PathLike = str | os.PathLike[str]


def _ending(path: Path) -> str:
    return next((e for e in (*IMAGE_FORMAT_ENDINGS, *LOSSY_ENDINGS) if path.name.lower().endswith(e)), "")


def handles(path: PathLike) -> bool:
    """Whether ``path`` is read and written here; lossy formats raise ImageIOError with the reason."""
    ending = _ending(Path(path))
    if ending in LOSSY_ENDINGS:
        raise ImageIOError(
            f"cannot use {path}: {ending} is a lossy format, so its intensities (and, in a label map, its label "
            "values) are altered by compression; expected a lossless file. Convert it to .png (2D) or .nii.gz."
        )
    return bool(ending)


def _sidecar(path: Path) -> Path | None:
    stem = path.name[: -len(_ending(path))]
    case = re.sub(r"_\d{4}$", "", stem)
    return next((p for p in (path.with_name(f"{case}.json"), path.with_name(f"{stem}.json")) if p.is_file()), None)


def _read_pixels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ImageIOError(f"image file {path} does not exist; expected a readable image file. Check the path.")
    try:
        if _ending(path) in TIFF_ENDINGS:
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError) as err:
        raise ImageIOError(f"cannot read image file {path} ({err}); check that the file is complete.") from err


def _is_16_bit_png(path: Path) -> bool:
    with path.open("rb") as handle:  # PNG header: 8-byte signature, IHDR length and type, width, height, bit depth
        header = handle.read(25)
    return len(header) == 25 and header[:8] == b"\x89PNG\r\n\x1a\n" and header[24] == 16


def _has_alpha(path: Path) -> bool:
    if _ending(path) in TIFF_ENDINGS:
        return False
    from PIL import Image

    with Image.open(path) as image:
        return image.mode in ("LA", "RGBA", "PA") or "transparency" in image.info


def _spacing_3d(path: Path) -> tuple[float, float, float]:
    sidecar = _sidecar(path)
    if sidecar is None:
        case = re.sub(r"_\d{4}$", "", path.name[: -len(_ending(path))])
        raise ImageIOError(
            f"3D TIFF {path} has no spacing sidecar; expected {path.parent / (case + '.json')} holding "
            '{"spacing": [z, y, x]} in mm (array order). Write that file next to the image.'
        )
    try:
        spacing = json.loads(sidecar.read_text()).get("spacing")
    except (OSError, ValueError, AttributeError) as err:
        raise ImageIOError(f"cannot read spacing sidecar {sidecar} ({err}); expected a JSON object.") from err
    if (
        not isinstance(spacing, list)
        or len(spacing) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in spacing)
    ):
        raise ImageIOError(f"spacing sidecar {sidecar} must hold {{\"spacing\": [z, y, x]}} with three positive "
                           f"numbers; got {spacing!r}. Fix the file.")  # fmt: skip
    return float(spacing[0]), float(spacing[1]), float(spacing[2])


def _channels(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """The file as ``(c, z, y, x)`` and its spacing in file dimensions (2 entries for 2D, 3 for 3D)."""
    handles(path)
    pixels = _read_pixels(path)
    if _ending(path) in TIFF_ENDINGS and pixels.ndim == 3 and pixels.shape[-1] not in (3, 4):
        return pixels[None], _spacing_3d(path)  # a 3D stack (z, y, x)
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4) or (pixels.ndim == 2 and _has_alpha(path)):
        if pixels.dtype != np.uint8 or _is_16_bit_png(path):
            raise ImageIOError(
                f"image file {path} is a 16-bit image with an alpha channel; expected grey or RGB without alpha "
                "(8 or 16 bit), or 8-bit RGBA. Drop the alpha channel, e.g. Image.open(p).convert('RGB') in Pillow."
            )
        if pixels.ndim == 3:
            pixels = pixels[..., :-1] if pixels.shape[-1] == 4 else pixels[..., 0]  # alpha carries no intensity
    if pixels.ndim == 2:
        return pixels[None, None], (1.0, 1.0)
    if pixels.ndim == 3:
        return np.moveaxis(pixels, -1, 0)[:, None], (1.0, 1.0)
    raise ImageIOError(f"image file {path} has pixel array shape {pixels.shape}; expected a 2D grey or RGB image "
                       "or a 3D TIFF stack.")  # fmt: skip


def read_format_image(path: PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """One single-channel file as ``(array (z, y, x), geometry)``, the contract of :func:`nnseg.io.read_image`.

    Raises:
        ImageIOError: If the file is missing, lossy, colour (read it with :func:`read_format_images`), a
            16-bit image with alpha, or a 3D TIFF without its spacing sidecar.
    """
    channels, spacing = _channels(Path(path))
    if channels.shape[0] != 1:
        raise ImageIOError(f"image file {path} has {channels.shape[0]} colour channels; expected one channel here. "
                           "nnseg.io.read_images reads it with one channel per colour.")  # fmt: skip
    return channels[0], ImageGeometry.identity(spacing)


def read_format_images(paths: Sequence[PathLike]) -> tuple[np.ndarray, ImageGeometry]:
    """Every channel of a case as float32 ``(c, z, y, x)``; a colour file gives one channel per colour.

    Raises:
        ImageIOError: As :func:`read_format_image`, or if the files differ in shape.
    """
    arrays: list[np.ndarray] = []
    spacing: tuple[float, ...] = (1.0, 1.0)
    for path in paths:
        channels, spacing = _channels(Path(path))
        if arrays and channels.shape[1:] != arrays[0].shape[1:]:
            raise ImageIOError(f"channel file {path} has shape {channels.shape[1:]} but {paths[0]} has "
                               f"{arrays[0].shape[1:]}; expected every channel of a case on one grid.")  # fmt: skip
        arrays.append(channels.astype(np.float32))
    if not arrays:
        raise ImageIOError("read_images got no paths; expected one file per channel, in channel order.")
    return np.concatenate(arrays), ImageGeometry.identity(spacing)


def write_format_image(array: np.ndarray, path: PathLike, geometry: ImageGeometry) -> None:
    """Write one channel (a 2D PNG/BMP/TIFF, or a 3D TIFF with its spacing sidecar) atomically.

    Raises:
        ImageIOError: If the values do not fit the format (PNG/BMP: integers in 0..65535 / 0..255).
    """
    path = Path(path)
    handles(path)
    array = np.asarray(array)
    array = array[0] if geometry.ndim == 2 and array.ndim == 3 else array
    if _ending(path) in TIFF_ENDINGS:
        import tifffile

        atomic_write(path, lambda tmp: tifffile.imwrite(tmp, array, compression="zlib", photometric="minisblack"))
        if array.ndim == 3:
            case = re.sub(r"_\d{4}$", "", path.name[: -len(_ending(path))])
            atomic_write_json(path.with_name(f"{case}.json"), {"spacing": list(geometry.spacing)})
        return
    if array.ndim != 2:
        raise ImageIOError(f"cannot write {path}: {_ending(path)} holds 2D images; got shape {array.shape}. "
                           "Use .tif (with a spacing sidecar) or .nii.gz for 3D.")  # fmt: skip
    if not np.issubdtype(array.dtype, np.integer) or array.min(initial=0) < 0 or array.max(initial=0) > 65535:
        raise ImageIOError(f"cannot write {path}: PNG/BMP hold integers in 0..65535; got {array.dtype} values "
                           f"{array.min()}..{array.max()}. Rescale to uint8 or uint16 first.")  # fmt: skip
    from PIL import Image

    dtype = np.uint8 if array.max(initial=0) < 256 else np.uint16
    image = Image.fromarray(array.astype(dtype))
    fmt = "PNG" if _ending(path) == ".png" else "BMP"
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
