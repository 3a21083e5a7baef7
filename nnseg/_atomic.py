"""Verified atomic file writes: write to a temporary name in the same folder, check it, then ``os.replace``.

A reader therefore sees either the old file or the complete new one, never a torn write; a file that
exists is complete. Some writers do not report a failed write (SimpleITK's compressed NIfTI writer leaves
a truncated file and no error when the disk fills or a file-size limit is hit), so every temporary file is
checked before it gets its final name: by its size for bytes nnseg wrote itself, by a ``verify`` callable
(a readback) otherwise. A write that fails for lack of space raises :class:`~nnseg.errors.WriteError`
saying which limit was hit, and leaves nothing behind.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnseg.errors import NnsegError, WriteError

__all__ = [
    "SPACE_ERRNOS",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "space_problem",
    "write_error",
]

SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
LOW_SPACE_BYTES = 1024 * 1024


def _file_size_limit() -> int | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def space_problem(path: Path) -> tuple[int, str] | None:
    """Say why writes under ``path`` may fail for lack of room: ``(errno, reason)``, or None when none is seen.

    Checks the free space of the file system holding ``path`` (disk full below 1 MiB) and the process's
    file-size limit (``ulimit -f``, ``RLIMIT_FSIZE``).
    """
    folder = path if path.is_dir() else path.parent
    try:
        stats = os.statvfs(folder)
        free = stats.f_bavail * stats.f_frsize
    except OSError:
        free = None
    if free is not None and free < LOW_SPACE_BYTES:
        return errno.ENOSPC, f"the disk holding {folder} is full ({free} bytes free)"
    soft = _file_size_limit()
    if soft is not None:
        return errno.EFBIG, f"this process may write files of at most {soft} bytes (file-size limit, `ulimit -f`)"
    return None


def write_error(path: Path, detail: str, *, cause_errno: int | None = None) -> WriteError:
    """Build the :class:`WriteError` for a failed write of ``path``, naming the limit that was hit.

    Args:
        path: The final name of the file that could not be written.
        detail: What went wrong (the failing call's message, or what the check found).
        cause_errno: The ``errno`` of the failure, when known.
    """
    found = space_problem(path)
    if cause_errno == errno.ENOSPC or (found and found[0] == errno.ENOSPC):
        why, code = found[1] if found and found[0] == errno.ENOSPC else "the disk is full", errno.ENOSPC
    elif cause_errno in (errno.EFBIG, errno.EDQUOT) or found:
        why = found[1] if found else "a file-size limit or disk quota was hit"
        code = cause_errno or errno.EFBIG
    else:
        why, code = "the write failed", cause_errno or errno.EIO
    error = WriteError(
        f"cannot write {path}: {why} ({detail}); nothing was kept under that name. Free space (or raise the "
        "limit) and run the same command again: finished work is kept and the rest is redone."
    )
    error.errno = code
    return error


def atomic_write(
    path: Path,
    write: Callable[[Path], object],
    *,
    verify: Callable[[Path], None] | None = None,
    suffix: str = ".tmp",
) -> None:
    """Call ``write(tmp_path)``, check the result, and move it to ``path`` atomically.

    The parent folder is created if needed. On any exception the temporary file is removed and ``path``
    is left untouched.

    Args:
        path: The final name.
        write: Writes the whole file to the path it is given.
        verify: Raises if the written temporary file is not complete (a readback); called before the rename.
        suffix: Ending of the temporary name (writers that choose a format by the ending need it).

    Raises:
        WriteError: If the disk is full, a file-size limit was hit, or ``verify`` found the file incomplete
            while space is short. Other errors of ``write`` and ``verify`` pass through unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        os.chmod(tmp_path, _new_file_mode())  # mkstemp makes 0600; give the file the mode open() would
        write(tmp_path)
        if not tmp_path.is_file():
            raise write_error(path, f"the writer left no file at {tmp_path.name}")
        if verify is not None:
            verify(tmp_path)
        os.replace(tmp_path, path)
    except OSError as err:
        if isinstance(err, NnsegError) or err.errno not in SPACE_ERRNOS:
            raise
        raise write_error(path, f"{type(err).__name__}: {err}", cause_errno=err.errno) from err
    finally:
        tmp_path.unlink(missing_ok=True)


@functools.cache
def _new_file_mode() -> int:
    """``0o666`` minus the process's umask: the mode ``open()`` gives a new file.

    The umask is read from ``/proc/self/status`` where it exists; ``os.umask`` would have to set it to read
    it, which would race with other threads creating files.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


def _expect_size(path: Path, nbytes: int) -> Callable[[Path], None]:
    def verify(tmp: Path) -> None:
        if tmp.stat().st_size != nbytes:
            raise write_error(path, f"{tmp.stat().st_size} of {nbytes} bytes reached the disk")

    return verify


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; the size on disk is checked before the rename."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data), verify=_expect_size(Path(path), len(data)))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any, *, sort_keys: bool = False) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=4, sort_keys=sort_keys) + "\n")
