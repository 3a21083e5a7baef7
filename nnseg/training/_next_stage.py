"""Previous-stage segmentations of the cascade: written by a ``3d_lowres`` fold's validation, read by the cascade.

A ``3d_lowres`` run whose plan has a next stage resamples each validation case's logits to the next stage's
preprocessed shape (:func:`nnseg.inference._previous_stage.resample_to_next_stage`) and stores the label map
beside the next stage's store, keyed by the lowres run (DESIGN's layout)::

    WORK/preprocessed/<store>/next_stage/<lowres run>/<case>.b2nd    uint8 (1, z, y, x), the cascade's grid
    WORK/preprocessed/<store>/next_stage/<lowres run>/<case>.json    written LAST: fold, plans, shape, labels

Both files are written atomically; a case counts only once its ``.json`` marker names an array of the
recorded shape. The ``3d_cascade_fullres`` trainer reads them per patch (one channel of the label slot).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.inference._previous_stage import allowed_labels, resample_to_next_stage
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore
from nnseg.preprocessing._arrays import read_array, read_region, write_array

__all__ = ["NEXT_STAGE_DIR", "NextStageTarget", "PreviousStageSegmentations", "write_next_stage"]

logger = logging.getLogger(__name__)

NEXT_STAGE_DIR = "next_stage"
"""Folder of a store that holds previous-stage segmentations, one subfolder per lowres run."""


@dataclass(frozen=True, slots=True)
class PreviousStageSegmentations:
    """``<store>/next_stage/<lowres run>/``: the previous-stage label maps of one lowres run on a store's grid.

    Args:
        folder: The folder (see :meth:`of`).
    """

    folder: Path

    @classmethod
    def of(cls, store_root: str | Path, lowres_run: str) -> PreviousStageSegmentations:
        """The segmentations of run folder ``lowres_run`` (``<plans>__3d_lowres__<run name>``) beside ``store_root``."""
        return cls(Path(store_root) / NEXT_STAGE_DIR / lowres_run)

    @property
    def run_name(self) -> str:
        """The lowres run folder name the segmentations come from."""
        return self.folder.name

    def array_path(self, case_id: str) -> Path:
        """``<case>.b2nd``."""
        return self.folder / f"{case_id}.b2nd"

    def marker_path(self, case_id: str) -> Path:
        """``<case>.json`` (written last: the completion marker)."""
        return self.folder / f"{case_id}.json"

    def write(self, case_id: str, seg: np.ndarray, *, fold: int | str | None, source: Mapping[str, Any]) -> None:
        """Store ``seg`` (``(*shape)`` labels) of ``case_id``; the marker records ``fold`` and ``source``."""
        seg = np.asarray(seg)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.marker_path(case_id).unlink(missing_ok=True)  # the case is incomplete until the new marker exists
        write_array(self.array_path(case_id), seg[None], patch_size=seg.shape)
        labels = sorted(int(v) for v in np.unique(seg))
        atomic_write_json(self.marker_path(case_id), {"case_id": case_id, "fold": fold, "shape": list(seg.shape),
                                                      "labels": labels, **dict(source)})  # fmt: skip

    def record(self, case_id: str) -> dict[str, Any] | None:
        """The marker of a complete case, or None when the case has none (or its array is missing)."""
        if not self.marker_path(case_id).is_file() or not self.array_path(case_id).is_file():
            return None
        record = read_json_file(self.marker_path(case_id), ConfigError, f"{self.marker_path(case_id)} is missing.")
        return record if isinstance(record, dict) else None

    def status(self, case_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Case id -> its marker (None: missing)."""
        return {case_id: self.record(case_id) for case_id in case_ids}

    def read(self, case_id: str) -> np.ndarray:
        """The label map of ``case_id``, ``(1, *shape)``."""
        return read_array(self.array_path(case_id))

    def read_region(self, case_id: str, index: tuple[slice, ...]) -> np.ndarray:
        """``seg[:, *index]`` (``index``: spatial slices) of ``case_id``, decompressing only the chunks it touches."""
        return read_region(self.array_path(case_id), (slice(None), *index))

    def check(
        self, case_ids: Sequence[str], store: PreprocessedStore, plan: ConfigurationPlan, spec: DatasetSpec,
        command: str,
    ) -> None:  # fmt: skip
        """Refuse to train the cascade unless every case has a usable segmentation (before any step).

        Args:
            case_ids: Every case the run uses (training and validation).
            store: The cascade's store (its case shapes).
            plan: The cascade configuration (its plans name).
            spec: The dataset's labels.
            command: The command that writes the missing segmentations (for the message).

        Raises:
            ConfigError: Naming the missing cases and ``command``, or the files of other plans, shape or labels.
        """
        records = self.status(case_ids)
        missing = [case_id for case_id, record in records.items() if record is None]
        if missing:
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
            raise ConfigError(
                f"{plan.name}: {len(missing)} case(s) have no previous-stage segmentation in {self.folder}: {shown}. "
                f"Every case of the fold needs the one its {plan.previous_stage} fold validated; run {command} "
                "(all folds), then check with `nnseg cascade-inputs`."
            )
        allowed = allowed_labels(spec) | {255}
        for case_id, record in records.items():
            if record is None:  # reported above
                continue
            where = f"{self.marker_path(case_id)} (and {self.array_path(case_id).name})"
            if record.get("plans_name") != plan.plans_name:
                raise ConfigError(
                    f"{where}: written by a {plan.previous_stage} run of plans {record.get('plans_name')!r}, but the "
                    f"cascade uses plans {plan.plans_name!r}. Validate the {plan.previous_stage} run of plans "
                    f"{plan.plans_name!r} (same run name), or train the cascade with the matching --plans."
                )
            shape = tuple(store.read_properties(case_id).shape_after_resampling)
            if tuple(record.get("shape", ())) != shape:
                raise ConfigError(
                    f"{where}: previous-stage segmentation of shape {tuple(record.get('shape', ()))}, but case "
                    f"{case_id!r} is {shape} in {store.root}; it was made for another store or preprocessing. "
                    f"Delete {self.folder} and rerun {command}."
                )
            unknown = sorted(set(int(v) for v in record.get("labels", [])) - allowed)
            if unknown:
                raise ConfigError(
                    f"{where}: holds label(s) {unknown} that {spec.source} does not have (labels "
                    f"{sorted(allowed_labels(spec))}). Delete {self.folder} and rerun {command}."
                )


@dataclass(frozen=True, slots=True)
class NextStageTarget:
    """Where a ``3d_lowres`` run's final validation writes the next stage's input.

    Args:
        store: The next stage's preprocessed store (its case shapes are the target grid).
        segmentations: The folder the label maps go to (``<store>/next_stage/<lowres run>/``).
    """

    store: PreprocessedStore
    segmentations: PreviousStageSegmentations


def write_next_stage(
    logits: np.ndarray, case_id: str, properties: Any, plan: ConfigurationPlan, spec: DatasetSpec,
    target: NextStageTarget, fold: int | str | None,
) -> bool:  # fmt: skip
    """Resample one lowres validation case's logits to the next stage's grid and store its label map.

    Returns:
        False (with a warning) when the next stage's store lacks the case: preprocess the next stage, then
        rerun the lowres validation (``--val-only``).
    """
    try:
        shape = tuple(target.store.read_properties(case_id).shape_after_resampling)
    except Exception as err:  # a missing or incomplete store raises several kinds (StoreError, OSError)
        logger.warning("next stage of %s: case %r is not in %s (%s); preprocess the next stage and rerun the "
                       "validation with --val-only", plan.name, case_id, target.store.root, err)  # fmt: skip
        return False
    seg = resample_to_next_stage(logits, shape, plan, properties, spec)
    source = {"plans_name": plan.plans_name, "configuration": plan.name,
              "lowres_preprocessing_hash": plan.preprocessing_hash()}  # fmt: skip
    target.segmentations.write(case_id, seg, fold=fold, source=source)
    return True
