"""Reading a store's complete cases: properties, class locations, whole cases and patches (chunk by chunk).

:class:`StoreReading` is the reading half of :class:`~nnseg.preprocessing.PreprocessedStore`; every read checks
the case's completion marker first, so a damaged or stale case is named with the command that repairs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnseg.errors import StoreError
from nnseg.preprocessing._arrays import read_array, read_npz, read_region
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase
from nnseg.preprocessing._store_files import case_damage, check_slices, damaged_case_error, reading
from nnseg.preprocessing._store_manifest import StoreManifest

__all__ = ["StoreReading"]


class StoreReading:
    """The readers of a store; the store supplies its folder, file paths, markers and manifest."""

    _root: Path
    _read_threads: int

    def path(self, case_id: str, piece: str) -> Path:
        """The file of one piece of a case (defined by the store)."""
        raise NotImplementedError

    def _marker(self, case_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def _require_manifest(self) -> StoreManifest:
        raise NotImplementedError

    def _complete_marker(self, case_id: str) -> dict[str, Any]:
        marker = self._marker(case_id)
        manifest = self._require_manifest()
        if marker is None:
            raise StoreError(
                f"case {case_id!r} is not complete in store {self._root} (no readable "
                f"{self.path(case_id, 'properties').name}); run preprocessing again to build it."
            )
        if marker.get("preprocessing_hash") != manifest.preprocessing_hash:
            raise StoreError(
                f"case {case_id!r} in store {self._root} was built for preprocessing "
                f"{marker.get('preprocessing_hash')}, but the store holds {manifest.preprocessing_hash}; run "
                "preprocessing again to rebuild it."
            )
        damage = case_damage(lambda piece: self.path(case_id, piece), marker.get("files"), verify=False)
        if damage is not None:
            raise damaged_case_error(case_id, self._root, damage)
        return marker

    def read_properties(self, case_id: str) -> CaseProperties:
        """Read the properties of a complete case.

        Raises:
            StoreError: If the case is not complete.
        """
        marker = self._complete_marker(case_id)
        return CaseProperties.from_json(marker["properties"], where=str(self.path(case_id, "properties")))

    def read_class_locations(self, case_id: str) -> dict[str, np.ndarray] | None:
        """Read the sampled foreground locations of a complete case (None for a case without a label)."""
        marker = self._complete_marker(case_id)
        if "class_locations" not in marker["files"]:
            return None
        return reading(case_id, self._root, lambda: read_npz(self.path(case_id, "class_locations")))

    def read_case(self, case_id: str) -> PreprocessedCase:
        """Read a whole complete case into memory.

        Raises:
            StoreError: If the case is not complete.
        """
        marker = self._complete_marker(case_id)
        files, threads = marker["files"], self._read_threads
        seg = reading(case_id, self._root, lambda: read_array(self.path(case_id, "seg"), nthreads=threads)
                      ) if "seg" in files else None  # fmt: skip
        locations = self.read_class_locations(case_id)
        return PreprocessedCase(
            case_id=case_id,
            data=reading(case_id, self._root, lambda: read_array(self.path(case_id, "data"), nthreads=threads)),
            seg=seg,
            properties=CaseProperties.from_json(marker["properties"], where=str(self.path(case_id, "properties"))),
            class_locations=locations,
        )

    def read_patch(self, case_id: str, slices: Sequence[slice]) -> tuple[np.ndarray, np.ndarray | None]:
        """Read one spatial region of a complete case, decompressing only the chunks it touches.

        Args:
            case_id: The case.
            slices: One ``slice`` per spatial axis (step 1 or None); all channels are returned. Bounds are
                clipped like NumPy slicing.

        Returns:
            ``(data[:, *slices], seg[:, *slices])``; the second is None for a case without a label.

        Raises:
            StoreError: If the case is not complete or ``slices`` is malformed.
        """
        index = check_slices(slices, case_id)
        if not self.path(case_id, "properties").is_file():
            raise StoreError(f"case {case_id!r} is not complete in store {self._root}; run preprocessing again.")
        data_path, seg_path, threads = self.path(case_id, "data"), self.path(case_id, "seg"), self._read_threads
        data = reading(case_id, self._root, lambda: read_region(data_path, index, nthreads=threads))
        if not seg_path.is_file():
            return data, None
        return data, reading(case_id, self._root, lambda: read_region(seg_path, index, nthreads=threads))
