"""Helpers of the selection tests: a work folder with a raw dataset and hand-made trained runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnseg.dataset import DatasetSpec
from nnseg.io import ImageGeometry, write_segmentation
from nnseg.preprocessing import CaseProperties
from nnseg.workspace import Workspace

GEOMETRY = ImageGeometry.identity((2.0, 1.0, 1.0))
SHAPE = (3, 8, 8)
SPEC = DatasetSpec.from_dict({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                              "numTraining": 6, "file_ending": ".nii.gz", "name": "Dataset999_Sel"})  # fmt: skip
CASES = tuple(f"case_{i}" for i in range(6))


def reference(index: int) -> np.ndarray:
    ref = np.zeros(SHAPE, np.uint8)
    ref[1, 1:5, 1:5] = 1
    ref[1, 2 + index % 3, 2:4] = 2
    return ref


def make_work(root: Path) -> Workspace:
    """A work folder whose raw dataset has labelsTr for CASES."""
    raw = root / "raw" / "Dataset999_Sel"
    (raw / "labelsTr").mkdir(parents=True)
    SPEC.save(raw / "dataset.json")
    for index, case in enumerate(CASES):
        write_segmentation(reference(index), raw / "labelsTr" / f"{case}.nii.gz", GEOMETRY)
    work = Workspace(root / "work")
    work.initialise(raw)
    SPEC.save(work.dataset_json_path)
    return work


def _properties() -> CaseProperties:
    return CaseProperties(spacing=(2.0, 1.0, 1.0), transpose_forward=(0, 1, 2), shape_before_cropping=SHAPE,
                          bbox_used_for_cropping=tuple((0, s) for s in SHAPE), shape_after_cropping_and_before_resampling=SHAPE,
                          shape_after_resampling=SHAPE, target_spacing=(2.0, 1.0, 1.0), geometry=GEOMETRY)  # fmt: skip


def make_run(work: Workspace, configuration: str, *, quality: float, folds: Sequence[int] = (0, 1), seed: int = 0,
             probabilities: bool = True, plans_hash: str = "h") -> Path:  # fmt: skip
    """A finished run whose folds validated CASES split round robin; ``quality`` is the share of voxels kept right."""
    rng = np.random.default_rng(seed)
    run_root = work.run_dir("nnUNetPlans", configuration, "nnseg", 0).parent
    for position, fold in enumerate(folds):
        fold_dir = run_root / f"fold_{fold}"
        (fold_dir / "validation").mkdir(parents=True)
        (fold_dir / "checkpoint_final.pt").write_bytes(b"")
        (fold_dir / "run.json").write_text(json.dumps({"dataset_spec": SPEC.to_dict(), "plans_hash": plans_hash}))
        (fold_dir / "validation" / "summary_preprocessed.json").write_text("{}")
        for index, case in enumerate(CASES):
            if index % len(folds) != position:
                continue
            onehot = np.eye(3, dtype=np.float32)[reference(index)].transpose(3, 0, 1, 2)
            noise = rng.random(onehot.shape).astype(np.float32)
            probs = quality * onehot + 2 * (1 - quality) * noise
            probs /= probs.sum(0, keepdims=True)
            write_segmentation(probs.argmax(0), fold_dir / "validation" / f"{case}.nii.gz", GEOMETRY)
            if probabilities:
                np.savez_compressed(fold_dir / "validation" / f"{case}.npz", probabilities=probs)
                _properties().save(fold_dir / "validation" / f"{case}.json")
    return run_root
