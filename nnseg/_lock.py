"""A lock file that keeps two processes from doing the same work: ``WorkLock(path, what)``.

The lock file holds the owner's pid, host and start time as JSON and is created atomically
(``O_CREAT | O_EXCL``), so of two processes starting together exactly one gets it. A second process is
refused with a :class:`~nnseg.errors.LockError` naming the owner. A lock left by a process that no longer
runs on this host (killed, crashed) is taken over with a logged note; a lock of another host is never
taken over (nnseg cannot see whether that process runs), its message says how to remove it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from nnseg.errors import LockError

__all__ = ["LockOwner", "WorkLock"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LockOwner:
    """Who holds a lock.

    Args:
        pid: Process id.
        host: Host name (``socket.gethostname()``).
        started: Unix time the lock was taken.
        what: The work the lock guards, e.g. ``"preprocessing shard 1 of 4"``.
    """

    pid: int
    host: str
    started: float
    what: str

    @classmethod
    def me(cls, what: str) -> LockOwner:
        """The owner record of this process."""
        return cls(os.getpid(), socket.gethostname(), time.time(), what)

    def describe(self) -> str:
        """``pid 123 on host node7, since 2024-05-01 12:00:00``."""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on host {self.host}, since {since}"

    def is_dead(self) -> bool:
        """True when the owner ran on this host and no process with its pid exists any more."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, under another user
            return False
        return False


def _read_owner(path: Path) -> LockOwner | None:
    try:
        data: Any = json.loads(path.read_text())
        return LockOwner(int(data["pid"]), str(data["host"]), float(data["started"]), str(data.get("what", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return LockOwner(-1, "?", path.stat().st_mtime if path.exists() else 0.0, "unreadable lock file")


class WorkLock:
    """A context manager holding ``path`` for this process while the work runs.

    Args:
        path: The lock file (its folder must exist when the lock is acquired).
        what: The work it guards, for messages (``"preprocessing shard 1 of 4 of store X"``).

    Example:
        >>> with WorkLock(store.root / ".preprocess.lock", "preprocessing store X"):
        ...     run()
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = str(what)
        self._owner: LockOwner | None = None

    def acquire(self) -> None:
        """Take the lock, or take over one left by a dead process of this host.

        Raises:
            LockError: If a live process (or a process of another host) holds it.
        """
        for _ in range(3):  # a takeover race with another process is retried, then refused
            me = LockOwner.me(self.what)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_owner(self.path)
                if owner is None:
                    continue  # released meanwhile
                if not owner.is_dead():
                    raise LockError(
                        f"{self.what} is already running: {owner.describe()} holds {self.path} ({owner.what}). Wait "
                        "for it to finish, or stop it; if that process is gone (e.g. on another host), delete the "
                        "lock file and run again."
                    ) from None
                self._take_over(owner)
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"pid": me.pid, "host": me.host, "started": me.started, "what": me.what}, handle)
            self._owner = me
            return
        raise LockError(f"{self.what}: could not take the lock {self.path}; another process is taking it. Run again.")

    def _take_over(self, owner: LockOwner) -> None:
        # rename to a name of our own first: of two processes removing the same dead lock only one succeeds
        grave = self.path.with_name(f"{self.path.name}.dead.{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        if _read_owner(grave) != owner:  # we moved a fresh lock of a faster process: put it back
            os.rename(grave, self.path)
            return
        grave.unlink(missing_ok=True)
        logger.warning(
            "taking over %s: its owner (%s, %s) is no longer running", self.path, owner.describe(), owner.what
        )

    def release(self) -> None:
        """Remove the lock file if this process still owns it."""
        if self._owner is not None and _read_owner(self.path) == self._owner:
            self.path.unlink(missing_ok=True)
        self._owner = None

    def __enter__(self) -> WorkLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
