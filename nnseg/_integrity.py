"""Integrity checks of image files that SimpleITK does not make itself.

SimpleITK's NIfTI reader is silent about three kinds of damage: a ``.nii.gz`` whose compressed stream
ends early (or fails its CRC) and a ``.nii`` cut short are read with the missing voxels set to zero, and
NaN or infinite stored values come back as 0. :func:`scan_nifti` reads the file's own bytes once, in
chunks (the gzip CRC and length are checked on the way), and checks the stored values as they stream by;
the writers use it to check what they wrote. :func:`read_nifti_values` makes the same checks while
decompressing the file once and returns its stored values, so a reader needs no second decompression
(:mod:`nnseg.io` takes only the header's geometry from SimpleITK).

:func:`check_geometry` refuses spacings and directions no stage can use; :func:`sha256_file` is the
checksum the preprocessed store records for its files.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from nnseg.errors import ImageIOError

__all__ = [
    "DIRECTION_ATOL",
    "check_geometry",
    "check_spacing",
    "count_nonfinite",
    "nonfinite_error",
    "read_nifti_values",
    "scan_nifti",
    "sha256_file",
]

CHUNK_BYTES = 8 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
DIRECTION_ATOL = 1e-4
NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES = 348, 540


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def _gunzip_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Decompress every gzip member of ``stream``; zlib checks each member's CRC-32 and length itself.

    Raises:
        EOFError: If the stream ends inside a member.
        zlib.error: If the compressed data or a member's trailer (CRC, length) is wrong.
    """
    pending = b""
    while True:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper: the trailer is verified
        data = pending or stream.read(CHUNK_BYTES)
        if not data:
            return
        while not decompressor.eof:
            if not data:
                data = stream.read(CHUNK_BYTES)
                if not data:
                    raise EOFError("the compressed stream ended before its end-of-stream marker")
            # max_length bounds the memory whatever the compression ratio
            out = decompressor.decompress(data, CHUNK_BYTES)
            data = decompressor.unconsumed_tail
            if out:
                yield out
        pending = decompressor.unused_data + data
        if not pending.strip(b"\x00"):  # zero padding after the last member is harmless
            pending = b""
            if not (rest := stream.read(CHUNK_BYTES)) or not rest.strip(b"\x00"):
                return
            pending = rest


def _damaged(path: Path, what: str) -> ImageIOError:
    return ImageIOError(
        f"image file {path} is damaged: {what}; its missing or corrupt voxels would be read as zeros. "
        "Re-copy or re-export the file (a download or copy that stopped early leaves such a file)."
    )


class _Layout(NamedTuple):
    dtype: np.dtype
    offset: int
    nbytes: int
    scaled: bool  # scl_slope / scl_inter change the stored values (SimpleITK then returns floats)


def _parse_header(head: bytes, path: Path) -> _Layout | None:
    """The stored dtype, data offset and size of a single-file NIfTI header, None for other layouts."""
    import nibabel as nib  # imported here: only NIfTI reads pay for it

    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")} if len(head) >= 4 else set()
    kind = nib.Nifti2Header if NIFTI2_HEADER_BYTES in sizes else nib.Nifti1Header
    needed = NIFTI2_HEADER_BYTES if kind is nib.Nifti2Header else NIFTI1_HEADER_BYTES
    if not sizes & {NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES}:
        return None  # not a NIfTI file at all: SimpleITK says so in its own words
    if len(head) < needed:
        raise _damaged(path, f"its NIfTI header is cut short ({len(head)} of {needed} bytes)")
    try:
        header = kind.from_fileobj(io.BytesIO(head[:needed]), check=False)
        magic = bytes(header["magic"]).rstrip(b"\x00")
        if magic not in (b"n+1", b"n+2"):  # a .hdr/.img pair or an Analyze file: SimpleITK's business
            return None
        dtype, shape, offset = header.get_data_dtype(), header.get_data_shape(), int(header.get_data_offset())
        pixdim = [float(v) for v in header["pixdim"][1 : 1 + min(3, len(shape))]]
        slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    except Exception as err:  # nibabel raises many kinds on a corrupt header
        raise _damaged(path, f"its NIfTI header cannot be parsed ({type(err).__name__}: {err})") from err
    check_spacing(pixdim, path)  # SimpleITK replaces a zero or non-finite pixdim by 1.0 without a word
    nbytes = math.prod(int(s) for s in shape) * dtype.itemsize
    return _Layout(dtype, max(offset, needed), nbytes, scaled=slope not in (0.0, 1.0) or inter != 0.0)


class _FiniteCounter:
    """Counts NaN and infinite values in a byte stream of one dtype (chunks need not align to items)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.active = dtype.kind in "fc"
        self.rest = b""
        self.nan = 0
        self.inf = 0

    def feed(self, data: bytes) -> None:
        if not self.active:
            return
        data = self.rest + data
        usable = len(data) - len(data) % self.dtype.itemsize
        self.rest = data[usable:]
        nan, inf = count_nonfinite(np.frombuffer(data, dtype=self.dtype, count=usable // self.dtype.itemsize))
        self.nan += nan
        self.inf += inf


def count_nonfinite(values: np.ndarray) -> tuple[int, int]:
    """Return ``(number of NaN, number of infinite)`` values of an array (0, 0 for integer arrays)."""
    if values.dtype.kind not in "fc":
        return 0, 0
    if np.isfinite(values).all():  # the common case: one vectorised pass, no counting
        return 0, 0
    return int(np.count_nonzero(np.isnan(values))), int(np.count_nonzero(np.isinf(values)))


def nonfinite_error(path: str | os.PathLike[str], nan: int, inf: int) -> ImageIOError:
    """The one message for an image holding NaN or infinite values (readers and ``nnseg verify`` share it)."""
    return ImageIOError(
        f"image file {path} holds {nan} NaN and {inf} infinite value(s); expected finite intensities. "
        "Replace them in the file, e.g. with the image minimum."
    )


def scan_nifti(path: str | os.PathLike[str], *, check_finite: bool = True) -> None:
    """Read a ``.nii``/``.nii.gz`` file's own bytes once and refuse damage SimpleITK would hide.

    Args:
        path: The file.
        check_finite: Also refuse NaN or infinite stored values (floating-point files only).

    Raises:
        ImageIOError: If the gzip stream ends early or fails its checksum, the header is unreadable, the
            file holds fewer data bytes than its header announces, or (``check_finite``) a stored value is
            NaN or infinite.
    """
    path = Path(path)
    with open(path, "rb") as stream:
        compressed = stream.read(2) == GZIP_MAGIC  # znzlib, SimpleITK's reader, also takes a plain .nii.gz
    scan = _Scan(path, check_finite)
    try:
        with open(path, "rb") as stream:
            for chunk in _gunzip_chunks(stream) if compressed else _chunks(stream):
                if not scan.feed(chunk):
                    break
                if not compressed and scan.data_checked():  # the size tells the rest
                    scan.position = max(scan.position, path.stat().st_size)
                    break
    except (EOFError, zlib.error) as err:
        raise _damaged(path, f"its compressed stream is broken ({err})") from err
    scan.finish()


class _Scan:
    """The state of one pass over a NIfTI file's bytes: header, data position, value counts."""

    def __init__(self, path: Path, check_finite: bool) -> None:
        self.path = path
        self.check_finite = check_finite
        self.head = b""
        self.parsed: _Layout | None = None
        self.other_layout = False
        self.position = 0
        self.counter: _FiniteCounter | None = None

    def feed(self, chunk: bytes) -> bool:
        """Take the next bytes; False when the file is not a single-file NIfTI (nothing more to check)."""
        if self.parsed is None:
            self.head += chunk
            if len(self.head) < NIFTI2_HEADER_BYTES or not self._parse():
                return not self.other_layout
            chunk, self.head = self.head, b""
        start, end = self.parsed[1], self.parsed[1] + self.parsed[2]  # type: ignore[index]
        if self.counter is not None and self.position + len(chunk) > start and self.position < end:
            self.counter.feed(chunk[max(0, start - self.position) : end - self.position])
        self.position += len(chunk)
        return True

    def _parse(self) -> bool:
        self.parsed = _parse_header(self.head, self.path)
        self.other_layout = self.parsed is None
        if self.parsed is not None and self.check_finite:
            self.counter = _FiniteCounter(self.parsed[0])
        return self.parsed is not None

    def data_checked(self) -> bool:
        """Whether the data bytes need no reading (no value check) and the header is parsed."""
        return self.parsed is not None and self.counter is None and self.position >= self.parsed[1]

    def finish(self) -> None:
        """Raise for what the pass found: a short header, missing data bytes, non-finite values."""
        if self.other_layout:
            return
        if self.parsed is None:  # a file shorter than a NIfTI-2 header
            if not self._parse():
                return
            head, self.head = self.head, b""
            self.feed(head)
        offset, nbytes = self.parsed[1], self.parsed[2]  # type: ignore[index]
        if self.position < offset + nbytes:
            got = max(0, self.position - offset)
            raise _damaged(self.path, f"it holds {got} of the {nbytes} data bytes its header announces")
        if self.counter is not None and (self.counter.nan or self.counter.inf):
            raise nonfinite_error(self.path, self.counter.nan, self.counter.inf)


def _gunzip_all(raw: bytes) -> bytes:
    """Decompress every gzip member of ``raw`` in one call each (see :func:`_gunzip_chunks` for the checks)."""
    parts: list[bytes] = []
    while True:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        parts.append(decompressor.decompress(raw))
        if not decompressor.eof:
            raise EOFError("the compressed stream ended before its end-of-stream marker")
        raw = decompressor.unused_data
        if not raw.strip(b"\x00"):  # zero padding after the last member is harmless
            return parts[0] if len(parts) == 1 else b"".join(parts)


def read_nifti_values(path: str | os.PathLike[str]) -> tuple[np.ndarray, bool] | None:
    """Read a ``.nii``/``.nii.gz`` file once, refuse what :func:`scan_nifti` refuses, and return its values.

    Returns:
        ``(values, scaled)``: the stored values as a flat array in the file's dtype and byte order (read-only,
        file order: x fastest) and whether the header scales them (``scl_slope``/``scl_inter``); None for a
        file that is not a single-file NIfTI (a ``.hdr``/``.img`` pair, Analyze, or no NIfTI at all).

    Raises:
        ImageIOError: As :func:`scan_nifti` with ``check_finite=True``.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        data = _gunzip_all(raw) if raw[:2] == GZIP_MAGIC else raw
    except (EOFError, zlib.error) as err:
        raise _damaged(path, f"its compressed stream is broken ({err})") from err
    del raw
    layout = _parse_header(data[:NIFTI2_HEADER_BYTES], path)
    if layout is None:
        return None
    if len(data) < layout.offset + layout.nbytes:
        got = max(0, len(data) - layout.offset)
        raise _damaged(path, f"it holds {got} of the {layout.nbytes} data bytes its header announces")
    values = np.frombuffer(data, dtype=layout.dtype, count=layout.nbytes // layout.dtype.itemsize, offset=layout.offset)
    nan, inf = count_nonfinite(values)
    if nan or inf:
        raise nonfinite_error(path, nan, inf)
    return values, layout.scaled


def check_spacing(spacing: Sequence[float], path: str | os.PathLike[str]) -> None:
    """Refuse a spacing that is not finite and positive (naming the file and the values).

    Raises:
        ImageIOError: If a spacing is zero, negative, NaN or infinite.
    """
    values = np.asarray(spacing, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ImageIOError(
            f"image file {path} has spacing {tuple(float(v) for v in values)} (x, y, z); expected finite "
            "spacings > 0 mm. Fix the header (e.g. SimpleITK's SetSpacing) and re-save the file."
        )


def check_geometry(spacing: Sequence[float], direction: Sequence[float], path: str | os.PathLike[str]) -> None:
    """Refuse a spacing that is not finite and positive, and a direction matrix that is not orthonormal.

    Args:
        spacing: The file's spacing (SimpleITK order).
        direction: Its direction cosines, row-major.
        path: The file, for the message.

    Raises:
        ImageIOError: Naming the file, the values found and how to fix them.
    """
    check_spacing(spacing, path)
    ndim = len(spacing)
    matrix = np.asarray(direction, dtype=np.float64)
    error = np.inf
    if matrix.size == ndim * ndim and np.all(np.isfinite(matrix)):
        matrix = matrix.reshape(ndim, ndim)
        error = float(np.max(np.abs(matrix @ matrix.T - np.eye(ndim))))
    if error > DIRECTION_ATOL:
        raise ImageIOError(
            f"image file {path} has a direction matrix {tuple(float(v) for v in np.ravel(direction))} that is "
            f"not orthonormal (largest deviation of D @ D.T from the identity: {error:.3g}, tolerance "
            f"{DIRECTION_ATOL:g}); expected a rotation or reflection. Fix the header and re-save the file."
        )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file (what ``sha256sum`` prints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in _chunks(stream):
            digest.update(chunk)
    return digest.hexdigest()
