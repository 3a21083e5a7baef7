"""The per-case fingerprint cache that lets a killed or sharded extraction continue.

Layout of ``cache_dir``::

    cache.json               the settings every entry was computed with (refused if they differ)
    cases/<name>.npy         (c, n) float32 foreground samples of one case
    cases/<name>.json        spacing, shapes, foreground count and input-file stamp of that case

Both files of an entry are written atomically, the ``.npy`` first: an entry whose ``.json`` exists is
complete. An entry whose input files changed since (size or modification time) is recomputed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nnseg._atomic import atomic_write, atomic_write_json
from nnseg._hashing import bytes_digest, content_hash
from nnseg.errors import FingerprintError
from nnseg.fingerprint._fingerprint import CaseFingerprint
from nnseg.sharding import Shard

if TYPE_CHECKING:
    from nnseg.dataset import Case, DatasetSpec

__all__ = ["CacheKey", "FingerprintCache", "FingerprintCacheStatus", "file_stamp"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = "nnseg.fingerprint_cache"
CACHE_FORMAT_VERSION = 2  # 2: keys hashed with nnseg._hashing (canonical JSON)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


def file_stamp(case: Case) -> list[list[Any]]:
    """Return ``[name, size, mtime_ns]`` of every file of ``case`` (images, then label)."""
    stamp: list[list[Any]] = []
    for path in case.paths:
        stat = path.stat()
        stamp.append([path.name, int(stat.st_size), int(stat.st_mtime_ns)])
    return stamp


@dataclass(frozen=True, slots=True)
class CacheKey:
    """The settings a cache entry depends on; a cache made with other settings is refused.

    Args:
        num_samples: Foreground samples drawn per case and channel.
        seed: Seed of each case's random state.
        num_channels: Image channels.
        case_ids: Every training case id of the dataset (sorted).
        spec_sha256: Hash of the dataset's ``dataset.json`` content.
    """

    num_samples: int
    seed: int
    num_channels: int
    case_ids: tuple[str, ...]
    spec_sha256: str

    @classmethod
    def for_dataset(cls, spec: DatasetSpec, case_ids: Sequence[str], *, num_samples: int, seed: int) -> CacheKey:
        """Build the key of a dataset and sampling settings."""
        return cls(num_samples, seed, spec.num_channels, tuple(case_ids), content_hash(spec.to_dict(), length=None))

    def to_json(self) -> dict[str, Any]:
        """Return the ``cache.json`` content."""
        return {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "num_channels": self.num_channels,
            "num_cases": len(self.case_ids),
            "case_ids_sha256": content_hash(list(self.case_ids), length=None),
            "dataset_spec_sha256": self.spec_sha256,
        }


@dataclass(frozen=True, slots=True)
class FingerprintCacheStatus:
    """Which training cases a fingerprint cache holds.

    Args:
        done: Case ids with a complete, current entry (sorted).
        missing: Case ids still to compute (sorted).
    """

    done: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def is_complete(self) -> bool:
        """Whether every case is cached."""
        return not self.missing

    def missing_in(self, shard: Shard) -> tuple[str, ...]:
        """Return the missing case ids that ``shard`` owns."""
        owned = set(shard.select(self.done + self.missing))
        return tuple(case_id for case_id in self.missing if case_id in owned)


class FingerprintCache:
    """Read and write per-case fingerprint results in one folder.

    Constructing it touches nothing; :meth:`open` checks (or creates) ``cache.json``.

    Args:
        root: The cache folder.
        key: The settings of the current run.
    """

    def __init__(self, root: str | os.PathLike[str], key: CacheKey) -> None:
        self.root = Path(root)
        self.key = key

    @property
    def key_path(self) -> Path:
        """``cache.json``."""
        return self.root / "cache.json"

    def open(self, *, create: bool) -> bool:
        """Check the cache's settings against :attr:`key`, creating the cache if ``create``.

        Returns:
            Whether the cache exists (always True when ``create``).

        Raises:
            FingerprintError: If the cache was made with other settings or its ``cache.json`` is unreadable.
        """
        expected = self.key.to_json()
        if not self.key_path.is_file():
            if not create:
                return False
            _create_exclusive(self.key_path, expected)
        try:
            found = json.loads(self.key_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise FingerprintError(
                f"fingerprint cache {self.root}: cannot read {self.key_path.name} ({err}); delete the folder "
                f"{self.root} (or pass another cache_dir) to start over."
            ) from err
        differences = [
            f"{k}: cache has {found.get(k)!r}, this run {v!r}" for k, v in expected.items() if found.get(k) != v
        ]
        if differences:
            raise FingerprintError(
                f"fingerprint cache {self.root} was made with other settings and cannot be mixed with this run "
                f"({'; '.join(differences)}). Delete the folder {self.root} or pass another cache_dir; "
                "the cache is never reused or removed silently."
            )
        return True

    def _paths(self, case_id: str) -> tuple[Path, Path]:
        name = case_id if _SAFE_NAME.fullmatch(case_id) else "case-" + bytes_digest(case_id.encode(), length=40)
        folder = self.root / "cases"
        return folder / f"{name}.json", folder / f"{name}.npy"

    def _read_entry(self, case_id: str) -> dict[str, Any] | None:
        json_path, npy_path = self._paths(case_id)
        if not json_path.is_file():
            return None
        try:
            entry = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            logger.warning(
                "fingerprint cache entry %s is unreadable (%s); recomputing case %r", json_path, err, case_id
            )
            return None
        if entry.get("case_id") != case_id or not npy_path.is_file():
            logger.warning("fingerprint cache entry %s is incomplete; recomputing case %r", json_path, case_id)
            return None
        return dict(entry)

    def has(self, case: Case) -> bool:
        """Whether ``case`` has a complete entry computed from its current files."""
        entry = self._read_entry(case.case_id)
        if entry is None:
            return False
        if entry.get("files") != file_stamp(case):
            logger.warning("input files of case %r changed since it was cached; recomputing it", case.case_id)
            return False
        return True

    def status(self, cases: Iterable[Case]) -> FingerprintCacheStatus:
        """Return which of ``cases`` are cached."""
        done: list[str] = []
        missing: list[str] = []
        for case in cases:
            (done if self.has(case) else missing).append(case.case_id)
        return FingerprintCacheStatus(tuple(sorted(done)), tuple(sorted(missing)))

    def write(self, case_id: str, stamp: list[list[Any]], result: CaseFingerprint) -> None:
        """Store one case's result atomically (samples first, then the entry that marks it complete)."""
        json_path, npy_path = self._paths(case_id)
        samples = np.ascontiguousarray(result.samples, dtype=np.float32)

        def save_npy(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, samples, allow_pickle=False)

        atomic_write(npy_path, save_npy)
        entry = {"case_id": case_id, "files": stamp, **result.metadata_json(), "samples_file": npy_path.name}
        atomic_write_json(json_path, entry)

    def read(self, case_id: str, *, with_samples: bool = True) -> CaseFingerprint:
        """Load one case's result; the samples are memory-mapped read-only.

        Args:
            case_id: The case.
            with_samples: False leaves the samples out (an empty ``(c, 0)`` array; no file is opened).

        Raises:
            FingerprintError: If the entry is missing or its samples do not match it.
        """
        entry = self._read_entry(case_id)
        json_path, npy_path = self._paths(case_id)
        if entry is None:
            raise FingerprintError(
                f"fingerprint cache {self.root} has no entry for case {case_id!r}; compute it first."
            )
        if not with_samples:
            return CaseFingerprint.from_metadata_json(entry, np.empty((self.key.num_channels, 0), np.float32))
        try:
            samples = np.load(npy_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            samples = None
            reason = str(err)
        else:
            reason = f"shape {samples.shape} dtype {samples.dtype}"
        if samples is None or list(samples.shape) != entry.get("samples_shape") or samples.dtype != np.float32:
            raise FingerprintError(
                f"fingerprint cache entry {npy_path} is damaged ({reason}; expected float32 of shape "
                f"{entry.get('samples_shape')}); delete {json_path} and {npy_path} and run again to recompute it."
            )
        return CaseFingerprint.from_metadata_json(entry, samples)


def _create_exclusive(path: Path, data: dict[str, Any]) -> None:
    """Write ``path`` only if it does not exist yet (two parts starting at once agree on one file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=4)
            handle.write("\n")
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            pass
        except OSError:  # file systems without hard links
            if not path.exists():
                os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
