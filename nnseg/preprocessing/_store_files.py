"""The case files of a preprocessed store: their names, verified writes, and the checks against the marker.

Each case's marker (``<case>.properties.json``, written last) lists every file of the case with its size
and SHA-256. :func:`case_damage` compares the files with that list: by size (cheap, every status call) or
also by checksum (``verify=True``: what a resumed preprocessing run and ``store.status(verify=True)`` do),
so a truncated file and a file whose bytes changed (an undecodable chunk of the right size) are both
found, and preprocessing redoes the case instead of training on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import space_problem, write_error
from nnseg._integrity import sha256_file
from nnseg.errors import NnsegError, StoreError
from nnseg.preprocessing._case import PreprocessedCase

__all__ = [
    "SUFFIXES",
    "TEMP",
    "case_damage",
    "check_case",
    "check_slices",
    "damaged_case_error",
    "file_entry",
    "piece_of",
    "reading",
    "same_arrays",
    "verified_write",
]

SUFFIXES = {
    "data": ".data.b2nd",
    "seg": ".seg.b2nd",
    "class_locations": ".locations.npz",
    "properties": ".properties.json",
}
TEMP = "tmp"
REPAIR = (
    "run preprocessing again (`nnseg preprocess WORK -c CONFIG`, or preprocess_dataset(...)) with the same "
    "plans: it finds damaged cases and rebuilds them"
)


def piece_of(name: str) -> tuple[str, str] | None:
    """Map a file name to ``(case_id, piece)``; temporary files map to piece ``"tmp"``; others to None."""
    if name.startswith(".") and name.endswith(".tmp"):
        final = name[1:-4].rsplit(".", 1)[0]  # _atomic names them .<final>.<random>.tmp
        found = piece_of(final)
        return None if found is None else (found[0], TEMP)
    for piece, suffix in SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], piece
    return None


def file_entry(path: Path, **extra: Any) -> dict[str, Any]:
    """The marker's record of one written file: name, size and SHA-256 (plus ``extra``)."""
    return {"file": path.name, "nbytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


def case_damage(path_of: Callable[[str], Path], files: Any, *, verify: bool) -> str | None:
    """Say why a case's files do not match its marker's list, or None when they do.

    Args:
        path_of: Maps a piece name to its file.
        files: The marker's ``"files"`` entry.
        verify: Also compare each file's SHA-256 (reads every byte).
    """
    if not isinstance(files, Mapping):
        return "its marker lists no files"
    for piece, info in files.items():
        if piece not in SUFFIXES or not isinstance(info, Mapping):
            return f"its marker lists an unknown piece {piece!r}"
        path = path_of(piece)
        try:
            size = path.stat().st_size
        except OSError:
            return f"{path.name} is missing"
        if size != info.get("nbytes"):
            return f"{path.name} has {size} bytes, its marker recorded {info.get('nbytes')}"
        if verify and "sha256" in info and sha256_file(path) != info["sha256"]:
            return f"{path.name} does not match its recorded SHA-256 (its bytes changed after it was written)"
    return None


def damaged_case_error(case_id: str, root: Path, reason: str) -> StoreError:
    """The error a reader raises for a damaged case: which case, what is wrong, and the repairing command."""
    return StoreError(f"case {case_id!r} in store {root} is damaged: {reason}. To repair it, {REPAIR}.")


def reading(case_id: str, root: Path, read: Callable[[], Any]) -> Any:
    """Call ``read()``; a decoding failure of a damaged file becomes the store's :func:`damaged_case_error`."""
    try:
        return read()
    except NnsegError:
        raise
    except Exception as err:  # blosc2 and zipfile raise many kinds on damaged bytes
        raise damaged_case_error(case_id, root, f"a file cannot be decoded ({type(err).__name__}: {err})") from err


def verified_write(path: Path, write: Callable[[], int], check: Callable[[], bool]) -> int:
    """Run ``write()`` (which returns the file size), then ``check()`` (a readback); return the size.

    Any failure removes the file, so nothing damaged stays under its final name.

    Raises:
        WriteError: If the readback differs, or the write failed for lack of space (disk full, file-size
            limit); other errors of ``write`` pass through.
    """
    try:
        nbytes = write()
    except NnsegError:
        path.unlink(missing_ok=True)
        raise
    except Exception as err:  # blosc2 reports a failed write as RuntimeError
        path.unlink(missing_ok=True)
        code = getattr(err, "errno", None)
        if space_problem(path) is not None or code is not None:
            raise write_error(path, f"{type(err).__name__}: {err}", cause_errno=code) from err
        raise
    try:
        problem = None if check() else "the file read back differs from what was written"
    except Exception as err:  # a file that does not even decode
        problem = f"the file does not read back ({type(err).__name__}: {err})"
    if problem is not None:
        path.unlink(missing_ok=True)
        raise write_error(path, problem)
    return nbytes


def same_arrays(back: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether two dicts of arrays hold the same keys and equal arrays."""
    return sorted(back) == sorted(arrays) and all(np.array_equal(back[k], v) for k, v in arrays.items())


def check_case(case: PreprocessedCase, root: Path) -> None:
    """Refuse a case whose id cannot name a file or whose arrays have the wrong rank or shape."""
    case_id = case.case_id
    if not case_id or "/" in case_id or os.sep in case_id or case_id.startswith("."):  # also "." and ".."
        raise StoreError(
            f"case id {case_id!r} cannot name a file in store {root}; ids must be non-empty, must not start "
            "with '.' and must not contain path separators."
        )
    if case.data.ndim != 4:
        raise StoreError(f"case {case_id!r}: data must be (c, z, y, x); got shape {case.data.shape}.")
    if case.seg is not None and (case.seg.ndim != 4 or case.seg.shape[1:] != case.data.shape[1:]):
        raise StoreError(
            f"case {case_id!r}: seg must be (1, z, y, x) with the spatial shape of data {case.data.shape[1:]}; "
            f"got shape {case.seg.shape}."
        )


def check_slices(slices: Sequence[slice], case_id: str) -> tuple[slice, ...]:
    """Check ``read_patch``'s slices and return the full index (all channels first)."""
    index = tuple(slices)
    if len(index) != 3 or not all(isinstance(s, slice) and s.step in (None, 1) for s in index):
        raise StoreError(f"read_patch({case_id!r}, ...): expected one slice with step 1 per spatial axis (z, y, x); "
                         f"got {slices!r}.")  # fmt: skip
    return (slice(None), *index)
