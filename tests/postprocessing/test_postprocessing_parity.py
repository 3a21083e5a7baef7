"""Parity: nnseg's determine chooses the same steps and writes the same voxels as nnunetv2's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnseg.dataset import DatasetSpec
from nnseg.io import ImageGeometry, read_segmentation, write_segmentation
from nnseg.postprocessing import Postprocessing

GEOMETRY = ImageGeometry.identity((2.0, 1.0, 1.0))
PLANS = {"dataset_name": "Dataset999_Parity", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "label_manager": "LabelManager", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
         "configurations": {}}  # fmt: skip


def _noisy_folders(root: Path, labels: dict, seed: int, max_label: int) -> None:
    rng = np.random.default_rng(seed)
    for folder in ("ref", "pred"):
        (root / folder).mkdir(parents=True)
    for index in range(4):
        ref = np.zeros((4, 12, 12), np.uint8)
        ref[1:3, 2:7, 2:7] = 1
        ref[1:3, 4:6, 4:6] = min(2, max_label)
        if max_label >= 3:
            ref[2:4, 8:11, 8:11] = 3
        pred = ref.copy()
        stray = rng.random(ref.shape) < 0.03  # scattered stray voxels of random labels
        pred[stray] = rng.integers(1, max_label + 1, size=int(stray.sum()))
        if index == 0:
            pred[pred == 1] = 0  # one case misses label 1 entirely
        write_segmentation(ref, root / "ref" / f"case_{index}.nii.gz", GEOMETRY)
        write_segmentation(pred, root / "pred" / f"case_{index}.nii.gz", GEOMETRY)
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, **labels}, "numTraining": 4,
                    "file_ending": ".nii.gz"}  # fmt: skip
    if any(isinstance(v, list) for v in labels.values()):
        dataset_json["regions_class_order"] = list(range(1, len(labels) + 1))
    (root / "dataset.json").write_text(json.dumps(dataset_json))


@pytest.mark.parity
@pytest.mark.parametrize(("labels", "max_label", "seed"), [
    ({"a": 1, "b": 2}, 2, 0),
    ({"a": 1, "b": 2, "c": 3}, 3, 1),
    ({"whole": [1, 2, 3], "core": [2, 3], "enh": 3}, 3, 2),
])  # fmt: skip
def test_determine_matches_nnunetv2(tmp_path: Path, labels: dict, max_label: int, seed: int) -> None:
    remove = pytest.importorskip("nnunetv2.postprocessing.remove_connected_components")
    _noisy_folders(tmp_path, labels, seed, max_label)
    spec = DatasetSpec.load(tmp_path / "dataset.json")
    ours = Postprocessing.determine(tmp_path / "pred", tmp_path / "ref", spec, tmp_path / "ours")
    theirs_in = tmp_path / "theirs"
    shutil.copytree(tmp_path / "pred", theirs_in)
    fns, kwargs = remove.determine_postprocessing(
        str(theirs_in),
        str(tmp_path / "ref"),
        PLANS,
        json.loads((tmp_path / "dataset.json").read_text()),
        num_processes=1,
    )
    expected = [
        tuple(k["labels_or_regions"])
        if isinstance(k["labels_or_regions"], (list, tuple)) and not isinstance(k["labels_or_regions"], tuple)
        else k["labels_or_regions"]
        for k in kwargs
    ]
    got = [step.labels if len(step.labels) > 1 else step.labels[0] for step in ours.steps]
    assert [_normal(v) for v in got] == [_normal(v) for v in expected]
    assert len(fns) == len(ours.steps)
    for index in range(4):
        mine, _ = read_segmentation(tmp_path / "ours" / f"case_{index}.nii.gz")
        theirs, _ = read_segmentation(theirs_in / "postprocessed" / f"case_{index}.nii.gz")
        assert np.array_equal(mine, theirs), f"case_{index}"


def _normal(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_normal(v) for v in value)
    return int(value)  # type: ignore[call-overload]
