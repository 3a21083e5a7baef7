"""``PreprocessedStore``: a folder of preprocessed cases that is safe to kill, resume, shard and share.

Layout (flat, one folder per distinct preprocessing)::

    store.json                  manifest: format version, preprocessing hash and the fields behind it
    <case>.data.b2nd            float32 image (c, z, y, x), blosc2 (see _arrays.py)
    <case>.seg.b2nd             int8/int16 label map (1, z, y, x); absent for cases without a label
    <case>.locations.npz        sampled foreground voxels per class (no pickle); absent without a label
    <case>.properties.json      written LAST: the completion marker, holding the case properties, the
                                preprocessing hash the case was built with and the size of every file

Files are written to temporary names (``.<name>.<random>.tmp``) and renamed into place. A case is *done*
when its marker names the store's key and every file it lists has the recorded size; anything else of a
case makes it *stale*. Nothing is deleted unless asked for by case id (:meth:`~PreprocessedStore.discard_cases`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._hashing import content_hash
from nnseg.dataset import DatasetSpec
from nnseg.errors import StoreError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._arrays import (
    read_npz,
    write_array,
    write_npz,
    written_array_matches,
)
from nnseg.preprocessing._case import PreprocessedCase
from nnseg.preprocessing._store_files import (
    SUFFIXES,
    TEMP,
    case_damage,
    check_case,
    file_entry,
    piece_of,
    same_arrays,
    verified_write,
)
from nnseg.preprocessing._store_manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    StoreManifest,
    StoreStatus,
    check_compatible,
    store_fields,
)
from nnseg.preprocessing._store_read import StoreReading

__all__ = ["PreprocessedStore", "StoreManifest", "StoreStatus", "store_fields", "store_name"]
TEMP_MANIFEST_AGE_S = 3600


def store_name(plan: ConfigurationPlan, spec: DatasetSpec) -> str:
    """A folder name that is the same exactly for plans with the same store key: ``<configuration>_<hash>``.

    Used by ``nnseg preprocess`` (``WORK/preprocessed/<store_name>/``): the default plans and ResEnc-L at the
    same spacing (and ``3d_cascade_fullres`` with ``3d_fullres``) share one folder; an edited plan gets a new one.
    """
    return f"{_store_prefix(plan)}_{content_hash(store_fields(plan, spec))}"


def _store_prefix(plan: ConfigurationPlan) -> str:
    # a cascade stage preprocesses as its parent (nnU-Net shares data_identifier); the hash still decides
    parents = [name for name in ("3d_fullres", "3d_lowres", "2d") if plan.data_identifier.endswith(f"_{name}")]
    return parents[0] if plan.previous_stage is not None and parents else plan.name


class PreprocessedStore(StoreReading):
    """A folder of preprocessed cases. Constructing one touches nothing on disk.

    Args:
        root: The store folder (nnU-Net's ``nnUNet_preprocessed/<dataset>/<data_identifier>``).
        read_threads: blosc2 decompression threads used by the readers (passed per call, never set globally).

    Example:
        >>> store = PreprocessedStore("work/preprocessed/3d_fullres_5aabd932ccde9e25")
        >>> store.status(dataset.case_ids).summary()
        '8 done, 0 missing, 0 stale'
    """

    def __init__(self, root: str | os.PathLike[str], *, read_threads: int = 1) -> None:
        self._root = Path(root)
        self._read_threads = int(read_threads)

    def __repr__(self) -> str:
        return f"PreprocessedStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The store folder."""
        return self._root

    manifest_path = property(lambda self: self._root / MANIFEST_NAME, doc="``store.json``.")

    def path(self, case_id: str, piece: str) -> Path:
        """The file of one piece (``"data"``, ``"seg"``, ``"class_locations"``, ``"properties"``) of a case."""
        return self._root / f"{case_id}{SUFFIXES[piece]}"

    # ----------------------------------------------------------------------------------- manifest
    def manifest(self) -> StoreManifest | None:
        """Read ``store.json``; None when the store has not been initialised.

        Raises:
            StoreError: If the manifest exists but cannot be parsed.
        """
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreError(
                f"{self.manifest_path} is not valid JSON ({err}); pass overwrite=True to write a new one "
                "(case files are then rebuilt), or use a new store folder."
            ) from err
        return StoreManifest.from_json(data, where=str(self.manifest_path))

    def initialise(self, plan: ConfigurationPlan, spec: DatasetSpec, *, overwrite: bool = False) -> StoreManifest:
        """Create the store for ``plan``, or check that an existing store holds the same preprocessing.

        A store made by another plan with the same store key (the plan's preprocessing fields plus the
        dataset's labels, see :func:`store_fields`; the default plans and ResEnc-L at one spacing, say) is
        shared as is. Temporary manifests older than an hour (a killed run's) are removed.

        Args:
            plan: The configuration to preprocess.
            spec: The dataset's ``dataset.json`` (its labels and regions decide the stored class locations).
            overwrite: Replace a manifest of other preprocessing (or an unreadable one). No case file is
                deleted here: cases built for the old hash count as stale and the runner rebuilds them.

        Returns:
            The manifest in force.

        Raises:
            StoreError: If the store was built for other preprocessing (or has an unreadable or newer
                manifest) and ``overwrite`` is False, or ``root`` is a file.
        """
        if self._root.exists() and not self._root.is_dir():
            raise StoreError(f"store folder {self._root} is a file; pass a folder path for the preprocessed store.")
        self._root.mkdir(parents=True, exist_ok=True)
        self._remove_temp_manifests()
        wanted = StoreManifest.for_plan(plan, spec)
        try:
            existing = self.manifest()
        except StoreError:
            if not overwrite:
                raise
            existing = None
        if existing is not None and not overwrite:
            check_compatible(existing, wanted, plan, self._root)
        same = existing is not None and existing.preprocessing_hash == wanted.preprocessing_hash
        if existing is not None and same and existing.format_version == FORMAT_VERSION:
            return existing  # shared by every plan with this preprocessing; keeps the original chunk layout
        atomic_write_json(self.manifest_path, wanted.to_json())
        return wanted

    def _remove_temp_manifests(self) -> None:
        # only old ones: a shard starting at the same moment may be renaming its own right now
        for entry in os.scandir(self._root):
            temp = entry.name.startswith(f".{MANIFEST_NAME}.") and entry.name.endswith(".tmp")
            if temp and time.time() - entry.stat().st_mtime > TEMP_MANIFEST_AGE_S:
                Path(entry.path).unlink(missing_ok=True)

    def _require_manifest(self) -> StoreManifest:
        manifest = self.manifest()
        if manifest is None:
            raise StoreError(
                f"{self._root} is not an initialised preprocessed store ({MANIFEST_NAME} is missing); run "
                "preprocess_dataset(...) or `nnseg preprocess WORK -c CONFIG` first."
            )
        return manifest

    # ----------------------------------------------------------------------------------- status
    def _scan(self) -> dict[str, set[str]]:
        """Map every case id with files in the store to the pieces present (``"tmp"`` for temp files)."""
        found: dict[str, set[str]] = {}
        if not self._root.is_dir():
            return found
        for entry in os.scandir(self._root):
            parsed = piece_of(entry.name)
            if parsed is not None and entry.is_file():
                found.setdefault(parsed[0], set()).add(parsed[1])
        return found

    def _marker(self, case_id: str) -> dict[str, Any] | None:
        """The parsed properties file of a case, or None when it is absent or unreadable."""
        try:
            data = json.loads(self.path(case_id, "properties").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _is_done(self, case_id: str, pieces: set[str], expected_hash: str | None, verify: bool) -> bool:
        if "properties" not in pieces or TEMP in pieces or expected_hash is None:
            return False
        marker = self._marker(case_id)
        if marker is None or marker.get("preprocessing_hash") != expected_hash:
            return False
        files = marker.get("files")
        if isinstance(files, dict) and not set(files) <= pieces:
            return False
        return case_damage(lambda piece: self.path(case_id, piece), files, verify=verify) is None

    def status(self, expected_ids: Iterable[str] | None = None, *, verify: bool = False) -> StoreStatus:
        """Say which cases are done, missing or stale (damaged cases are stale).

        Args:
            expected_ids: The cases the store should hold (a dataset's ``case_ids``, or one shard's). None
                means every case with files in the store.
            verify: Also compare every file's SHA-256 with its marker (reads the whole store); without it
                only the sizes are compared.

        Raises:
            StoreError: If the manifest exists but cannot be parsed.
        """
        manifest = self.manifest()
        expected_hash = None if manifest is None else manifest.preprocessing_hash
        found = self._scan()
        expected = sorted(set(found) if expected_ids is None else set(expected_ids))
        done, missing, stale = [], [], []
        for case_id in expected:
            pieces = found.get(case_id)
            if not pieces:
                missing.append(case_id)
            elif self._is_done(case_id, pieces, expected_hash, verify):
                done.append(case_id)
            else:
                stale.append(case_id)
        extra = sorted(set(found) - set(expected))
        return StoreStatus(tuple(done), tuple(missing), tuple(stale), tuple(extra))

    def case_ids(self) -> tuple[str, ...]:
        """The complete cases, sorted.

        Raises:
            StoreError: If the store also holds damaged or incomplete cases (training must not silently
                drop them); the message names them and the repairing command.
        """
        status = self.status()
        if status.stale:
            listed = ", ".join(repr(c) for c in status.stale)
            raise StoreError(
                f"store {self._root} holds {len(status.stale)} damaged or incomplete case(s): {listed}. To repair "
                "them, run preprocessing again (`nnseg preprocess WORK -c CONFIG`, or preprocess_dataset(...)) with "
                "the same plans; or remove them with store.discard_cases([...]) to go on without them."
            )
        return status.done

    def missing(self, case_ids: Iterable[str]) -> list[str]:
        """Return the ids of ``case_ids`` that are not complete (missing or stale), in the given order."""
        ids = list(case_ids)
        done = set(self.status(ids).done)
        return [case_id for case_id in ids if case_id not in done]

    def discard_cases(self, case_ids: Iterable[str]) -> list[Path]:
        """Delete this store's files of the given cases (marker first) and return what was deleted.

        Only files named after those case ids with the store's suffixes (and their temporary files) are
        touched; nothing else in the folder is.
        """
        wanted = set(case_ids)
        by_kind: dict[bool, list[Path]] = {True: [], False: []}
        if self._root.is_dir():
            for entry in os.scandir(self._root):
                parsed = piece_of(entry.name)
                if parsed is not None and parsed[0] in wanted and entry.is_file():
                    by_kind[parsed[1] == "properties"].append(Path(entry.path))
        removed = sorted(by_kind[True]) + sorted(by_kind[False])  # the marker goes first
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    # ----------------------------------------------------------------------------------- writing
    def write_case(self, case: PreprocessedCase) -> None:
        """Write one case: its arrays first, its properties file (the completion marker) last.

        A previous copy of the case stops counting as done before anything is replaced.

        Raises:
            StoreError: If the store is not initialised, or the case id or arrays are unusable.
        """
        manifest = self._require_manifest()
        check_case(case, self._root)
        self.path(case.case_id, "properties").unlink(missing_ok=True)
        files: dict[str, dict[str, Any]] = {}
        patch = manifest.chunk_patch_size
        for piece, array in (("data", case.data), ("seg", case.seg)):
            if array is None:
                self.path(case.case_id, piece).unlink(missing_ok=True)
                continue
            files[piece] = _write_array(self.path(case.case_id, piece), array, patch)
        if case.class_locations is None:
            self.path(case.case_id, "class_locations").unlink(missing_ok=True)
        else:
            path, locations = self.path(case.case_id, "class_locations"), case.class_locations
            verified_write(path, lambda: write_npz(path, locations), lambda: same_arrays(read_npz(path), locations))
            files["class_locations"] = file_entry(path, keys=list(locations))
        marker = {"format_version": FORMAT_VERSION, "case_id": case.case_id,
                  "preprocessing_hash": manifest.preprocessing_hash, "files": files,
                  "properties": case.properties.to_json()}  # fmt: skip
        atomic_write_json(self.path(case.case_id, "properties"), marker)


def _write_array(path: Path, array: np.ndarray, patch: Sequence[int]) -> dict[str, Any]:
    """Write one array piece, check its header and last block, and return its marker entry."""
    verified_write(path, lambda: write_array(path, array, patch_size=patch),
                   lambda: written_array_matches(path, array))  # fmt: skip
    return file_entry(path, shape=list(array.shape), dtype=str(array.dtype))
