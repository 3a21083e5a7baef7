"""nnU-Net's determine rule on hand-made folders, the JSON form, apply, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from nnseg.dataset import DatasetSpec
from nnseg.io import ImageGeometry, read_segmentation, write_segmentation
from nnseg.postprocessing import (
    Postprocessing,
    PostprocessingError,
    PostprocessingStep,
    apply_postprocessing_folder,
    determine_postprocessing,
)
from nnseg.sharding import Shard

GEOMETRY = ImageGeometry((1.0, 2.0, 3.0), (1.0, -2.0, 5.0), tuple(float(v) for v in np.eye(3).ravel()))


def spec(labels: dict, **extra: object) -> DatasetSpec:
    return DatasetSpec.from_dict({"channel_names": {"0": "CT"}, "labels": {"background": 0, **labels},
                                  "numTraining": 2, "file_ending": ".nii.gz", **extra})  # fmt: skip


TWO = spec({"a": 1, "b": 2})


def write_case(root: Path, name: str, ref: np.ndarray, pred: np.ndarray) -> None:
    write_segmentation(ref, root / "ref" / f"{name}.nii.gz", GEOMETRY)
    write_segmentation(pred, root / "pred" / f"{name}.nii.gz", GEOMETRY)


def base(shape: tuple[int, ...] = (3, 8, 8)) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def test_spurious_blob_of_one_label_is_removed_per_label(tmp_path: Path) -> None:
    ref, pred = base(), base()
    ref[1, 1:4, 1:4] = 1
    ref[1, 5:7, 5:8] = 2
    pred[...] = ref
    pred[1, 7, 0] = 1  # a stray voxel of label 1 far from the true object
    pred[0, 5, 0] = 2  # a stray voxel of label 2 near nothing
    (tmp_path / "ref").mkdir(), (tmp_path / "pred").mkdir()
    write_case(tmp_path, "c1", ref, pred)
    pp = determine_postprocessing(tmp_path / "pred", tmp_path / "ref", TWO, tmp_path / "out")
    # The union of foreground is two separate objects (labels 1 and 2 do not touch): step 1 would delete one.
    assert [t.accepted for t in pp.trials] == [False, True, True]
    assert [s.labels for s in pp.steps] == [(1,), (2,)]
    assert pp.dice_after["foreground_mean"] == 1.0 > pp.dice_before["foreground_mean"]
    written, geometry = read_segmentation(tmp_path / "out" / "c1.nii.gz")
    assert np.array_equal(written[0], ref)
    assert geometry == GEOMETRY
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["foreground_mean"]["Dice"] == 1.0


def test_whole_foreground_step_needs_a_strict_rise_and_no_label_worse(tmp_path: Path) -> None:
    ref, pred = base(), base()
    ref[1, 1:4, 1:4] = 1
    ref[1, 2, 2] = 2  # label 2 inside label 1: one foreground object
    pred[...] = ref
    pred[2, 7, 7] = 2  # stray label-2 voxel: removing it helps label 2 and hurts nothing
    (tmp_path / "ref").mkdir(), (tmp_path / "pred").mkdir()
    write_case(tmp_path, "c1", ref, pred)
    pp = determine_postprocessing(tmp_path / "pred", tmp_path / "ref", TWO, tmp_path / "out")
    assert pp.trials[0].accepted
    assert pp.steps[0].labels == (1, 2)
    # the per-label steps change nothing more: Dice equal, not higher, so they are not kept
    assert [t.accepted for t in pp.trials[1:]] == [False, False]


def test_a_nan_label_blocks_the_foreground_step_and_its_own(tmp_path: Path) -> None:
    three = spec({"a": 1, "b": 2, "c": 3})  # label 3 in no reference and no prediction: mean Dice NaN
    ref, pred = base(), base()
    ref[1, 1:4, 1:4] = 1
    pred[...] = ref
    pred[0, 7, 7] = 1
    (tmp_path / "ref").mkdir(), (tmp_path / "pred").mkdir()
    write_case(tmp_path, "c1", ref, pred)
    pp = determine_postprocessing(tmp_path / "pred", tmp_path / "ref", three, tmp_path / "out")
    assert math.isnan(pp.dice_before["foreground_mean"])
    assert [t.accepted for t in pp.trials] == [False, True, False, False]
    assert [s.labels for s in pp.steps] == [(1,)]


def test_regions_are_judged_per_region_and_removed_voxels_become_zero(tmp_path: Path) -> None:
    regions = spec({"whole": [1, 2], "core": 2}, regions_class_order=[1, 2])
    ref, pred = base(), base()
    ref[1, 1:5, 1:5] = 1
    ref[1, 2:4, 2:4] = 2
    pred[...] = ref
    pred[1, 7, 7] = 2  # a stray "core" voxel, which is also "whole"
    (tmp_path / "ref").mkdir(), (tmp_path / "pred").mkdir()
    write_case(tmp_path, "c1", ref, pred)
    pp = determine_postprocessing(tmp_path / "pred", tmp_path / "ref", regions, tmp_path / "out")
    assert pp.labels == ("(1, 2)", "2")
    assert pp.steps
    assert pp.apply(pred[None])[0, 1, 7, 7] == 0


def test_json_round_trip_and_apply_folder_sharded_and_resumable(tmp_path: Path) -> None:
    pp = Postprocessing((PostprocessingStep((1, 2)), PostprocessingStep(((1, 2),))), ("1", "2"))
    pp.save(tmp_path / "pp.json")
    assert Postprocessing.load(tmp_path / "pp.json") == pp
    (tmp_path / "pred").mkdir()
    for index in range(3):
        seg = base()
        seg[0, 0, index] = 1
        seg[2, 5:7, 5:7] = 2
        write_segmentation(seg, tmp_path / "pred" / f"c{index}.nii.gz", GEOMETRY)
    first = apply_postprocessing_folder(pp, tmp_path / "pred", tmp_path / "out", TWO, shard=Shard(0, 2))
    assert [p.name for p in first] == ["c0.nii.gz", "c2.nii.gz"]
    assert apply_postprocessing_folder(pp, tmp_path / "pred", tmp_path / "out", TWO, shard=Shard(0, 2)) == []
    apply_postprocessing_folder(pp, tmp_path / "pred", tmp_path / "out", TWO, shard=Shard(1, 2))
    out, _ = read_segmentation(tmp_path / "out" / "c1.nii.gz")
    assert out[0, 0, 0, 1] == 0
    assert (out[0, 2, 5:7, 5:7] == 2).all()


def test_bad_input_names_the_files(tmp_path: Path) -> None:
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
    write_case(tmp_path, "c1", base(), base())
    write_segmentation(base(), tmp_path / "pred" / "extra.nii.gz", GEOMETRY)
    with pytest.raises(PostprocessingError, match=r"1 prediction\(s\) in .*pred have no reference .*extra.nii.gz"):
        determine_postprocessing(tmp_path / "pred", tmp_path / "ref", TWO, tmp_path / "out")
    (tmp_path / "pred" / "extra.nii.gz").unlink()
    write_segmentation(base(), tmp_path / "ref" / "c2.nii.gz", GEOMETRY)
    with pytest.raises(
        PostprocessingError,
        match=r"cannot determine postprocessing: 1 of \d+ reference\(s\) in .*ref have no prediction .*c2.nii.gz",
    ):
        determine_postprocessing(tmp_path / "pred", tmp_path / "ref", TWO, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(PostprocessingError, match="is the prediction or reference folder"):
        determine_postprocessing(tmp_path / "pred", tmp_path / "ref", TWO, tmp_path / "pred")
    other = Postprocessing((), ("1", "2", "3"))
    with pytest.raises(PostprocessingError, match=r"determined for labels \['1', '2', '3'\] but the dataset"):
        apply_postprocessing_folder(other, tmp_path / "pred", tmp_path / "out", TWO)
    (tmp_path / "bad.json").write_text(
        json.dumps({"format_version": 1, "labels": ["1"], "steps": [{"operation": "x"}]})
    )
    with pytest.raises(PostprocessingError, match="expected .*keep_largest_component"):
        Postprocessing.load(tmp_path / "bad.json")
    with pytest.raises(PostprocessingError, match="does not exist; write one with"):
        Postprocessing.load(tmp_path / "missing.json")
    assert not (tmp_path / "out").exists()
