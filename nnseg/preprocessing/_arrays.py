"""The on-disk array format of the preprocessed store: chunked, compressed blosc2 ``.b2nd`` files.

Why blosc2 and not plain ``.npy`` memory maps: see docs/preprocessing.md (measured by
benchmarks/bench_preprocess.py). The short version: the store is about 9x smaller on disk and a random
training patch read from a cold page cache costs about the same, because only the chunks (and inside them
only the blocks) under the patch are decompressed.

Two rules keep the files reproducible and the readers harmless:

* Compression always runs with **one thread**. blosc2 appends chunks in completion order when several
  threads compress, so a multi-threaded write gives different bytes on every run (measured); with one
  thread the same array gives the same file, which the kill-and-resume tests rely on. Parallelism comes
  from the case-level worker processes instead.
* Readers open files read-only (``mode="r"``, memory-mapped) and pass their thread count through
  ``blosc2.DParams``; nothing here touches blosc2's process-global settings.

Chunk and block shapes follow the idea of nnU-Net's choice (facts §6.2), implemented here independently:
a block is about the patch rounded up to powers of two and shrunk until it fits ``MAX_BLOCK_BYTES``; a chunk
is a whole number of blocks covering about 1.5 patches, shrunk until it fits ``MAX_CHUNK_BYTES``.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from nnseg._atomic import atomic_write

__all__ = [
    "ARRAY_SUFFIX",
    "MAX_BLOCK_BYTES",
    "MAX_CHUNK_BYTES",
    "array_layout",
    "open_array",
    "read_array",
    "read_npz",
    "read_region",
    "write_array",
    "written_array_matches",
    "write_npz",
]

ARRAY_SUFFIX = ".b2nd"
MAX_BLOCK_BYTES = 128 * 1024
MAX_CHUNK_BYTES = 6 * 1024 * 1024
CHUNK_TO_PATCH = 1.5
CODEC = blosc2.Codec.LZ4HC
CLEVEL = 5
NPZ_LEVEL = 1


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, n))))


def _spatial_patch(patch_size: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Promote a 2-D patch to ``(1, py, px)`` and check it against the spatial rank."""
    patch = tuple(int(p) for p in patch_size)
    if len(patch) == ndim - 1:
        patch = (1, *patch)
    if len(patch) != ndim:
        raise ValueError(f"patch_size {list(patch_size)} does not fit an array with {ndim} spatial axes")
    return patch


def array_layout(
    shape: Sequence[int], patch_size: Sequence[int], itemsize: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Choose blosc2 ``(chunks, blocks)`` for an array ``(c, *spatial)`` read in patches of ``patch_size``.

    Args:
        shape: The array shape, channel axis first.
        patch_size: The training patch (2 or 3 spatial axes; a 2-D patch reads one slice of a 3-D volume).
        itemsize: Bytes per element.

    Returns:
        ``(chunks, blocks)``, both with 1 on the channel axis, each axis clamped to the array.
    """
    spatial = tuple(max(1, int(s)) for s in shape[1:])
    patch = tuple(max(1, p) for p in _spatial_patch(patch_size, len(spatial)))
    target = [min(s, max(1, math.floor(CHUNK_TO_PATCH * p))) for s, p in zip(spatial, patch)]
    block = [min(_next_pow2(p), s) for p, s in zip(patch, spatial)]
    while math.prod(block) * itemsize > MAX_BLOCK_BYTES and max(block) > 1:
        ratios = [b / t if b > 1 else -1.0 for b, t in zip(block, target)]
        axis = len(ratios) - 1 - ratios[::-1].index(max(ratios))  # the largest ratio; ties go to the later axis
        block[axis] = max(1, _next_pow2(block[axis]) // 2)
    chunk = [min(s, b * math.ceil(t / b)) for s, b, t in zip(spatial, block, target)]
    while math.prod(chunk) * itemsize > MAX_CHUNK_BYTES:
        over = [c / b if c > b else 0.0 for c, b in zip(chunk, block)]
        if max(over) == 0.0:
            break
        axis = over.index(max(over))  # the axis with the most blocks per chunk gives one block back
        chunk[axis] = max(block[axis], chunk[axis] - block[axis])
    return (1, *chunk), (1, *block)


def _cparams(array: np.ndarray) -> blosc2.CParams:
    # byte shuffle helps both float32 images and int8/int16 label maps; one thread keeps files reproducible
    return blosc2.CParams(
        codec=CODEC, clevel=CLEVEL, filters=[blosc2.Filter.SHUFFLE], typesize=array.dtype.itemsize, nthreads=1
    )


def write_array(path: str | os.PathLike[str], array: np.ndarray, *, patch_size: Sequence[int]) -> int:
    """Write ``array`` (``(c, *spatial)``) to ``path`` atomically and return the file size in bytes.

    The file is written under a temporary name in the same folder and renamed into place, so ``path``
    either does not exist or is complete. Same array and patch size, same bytes.
    """
    array = np.ascontiguousarray(array)
    chunks, blocks = array_layout(array.shape, patch_size, array.dtype.itemsize)

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)  # blosc2 writes a fresh frame; no stale bytes may survive
        # dparams: blosc2 writes the decompression thread count into the frame header; a fixed value keeps
        # the bytes independent of the machine's core count and of blosc2's global setting
        blosc2.asarray(array, urlpath=str(tmp), mode="w", chunks=chunks, blocks=blocks, cparams=_cparams(array),
                       dparams=blosc2.DParams(nthreads=1))  # fmt: skip

    atomic_write(Path(path), write)
    return Path(path).stat().st_size


def open_array(path: str | os.PathLike[str], *, nthreads: int = 1) -> Any:
    """Open a ``.b2nd`` file read-only (memory-mapped) as a lazily decompressed ``blosc2.NDArray``.

    Args:
        path: The file.
        nthreads: Decompression threads for reads through the returned array.
    """
    return blosc2.open(str(path), mode="r", mmap_mode="r", dparams=blosc2.DParams(nthreads=nthreads))


def read_array(path: str | os.PathLike[str], *, nthreads: int = 1) -> np.ndarray:
    """Read a whole ``.b2nd`` file into memory."""
    return np.asarray(open_array(path, nthreads=nthreads)[...])


def read_region(path: str | os.PathLike[str], index: tuple[slice, ...], *, nthreads: int = 1) -> np.ndarray:
    """Read ``array[index]`` from a ``.b2nd`` file, decompressing only the chunks the region touches."""
    return np.asarray(open_array(path, nthreads=nthreads)[index])


def written_array_matches(path: str | os.PathLike[str], array: np.ndarray) -> bool:
    """Cheap readback of a file :func:`write_array` just wrote: header, shape, dtype and the last block.

    A truncated or torn frame fails to open or to decode its last chunk; decoding the whole file again
    (what this replaces) cost as much as a tenth of a case's preprocessing time and found nothing more, since
    the file's SHA-256 is recorded right after and checked whenever a run resumes.
    """
    stored = open_array(path)
    if tuple(stored.shape) != tuple(array.shape) or np.dtype(stored.dtype) != array.dtype:
        return False
    if array.size == 0:
        return True
    last = tuple(slice(s - 1, s) for s in array.shape)  # inside the last chunk and block of the frame
    return bool(np.array_equal(np.asarray(stored[last]), array[last]))


def write_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> int:
    """Write named arrays as an ``.npz`` file atomically (no pickle) and return the file size in bytes.

    Unlike ``np.savez`` the zip entries carry a fixed timestamp, so the same arrays give the same bytes.
    Deflate level 1: the coordinates compress about as well as at the default level 6, four times faster.
    """

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for key, value in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(value), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue(), compresslevel=NPZ_LEVEL)

    atomic_write(Path(path), write)
    return Path(path).stat().st_size


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (pickled objects are refused)."""
    with np.load(str(path), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
