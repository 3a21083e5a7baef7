"""Evaluation: metric rules, summary layout, folder pairing errors, and equality with nnU-Net's evaluator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnseg.dataset import DatasetSpec
from nnseg.errors import EvaluationError
from nnseg.evaluation import EvaluationSummary, evaluate_folder
from nnseg.evaluation._metrics import evaluated_labels, region_metrics
from nnseg.io import ImageGeometry, write_segmentation

LABELS = DatasetSpec.from_dict({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2, "ignore": 3},
                                "numTraining": 3, "file_ending": ".nii.gz"})  # fmt: skip
REGIONS = DatasetSpec.from_dict({"channel_names": {"0": "MR"}, "labels": {"background": 0, "whole": [1, 2, 3],
                                 "core": [2, 3], "enh": 3}, "regions_class_order": [1, 2, 3],
                                 "numTraining": 3, "file_ending": ".nii.gz"})  # fmt: skip


def _write_pairs(root: Path, seed: int, num_cases: int = 3, max_label: int = 3) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
    for folder in ("ref", "pred"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(num_cases):
        ref = rng.integers(0, max_label + 1, size=(4, 6, 5))
        pred = np.where(rng.random(ref.shape) < 0.7, ref, rng.integers(0, max_label, size=ref.shape))
        if index == 0:
            ref[ref == 2] = 0  # label 2 absent from the reference of one case
            pred[pred == 2] = 0
        write_segmentation(ref, root / "ref" / f"case_{index}.nii.gz", geometry)
        write_segmentation(pred, root / "pred" / f"case_{index}.nii.gz", geometry)
    return root / "pred", root / "ref"


def test_metric_formulas_on_a_small_example() -> None:
    ref = np.array([1, 1, 0, 0, 3, 1])
    pred = np.array([1, 0, 1, 0, 1, 1])
    metrics = region_metrics(ref, pred, 1, ignore_mask=ref == 3)
    assert metrics == {"Dice": 2 * 2 / (2 * 2 + 1 + 1), "IoU": 2 / 4, "FP": 1, "TP": 2, "FN": 1, "TN": 1,
                       "n_pred": 3, "n_ref": 3}  # fmt: skip
    empty = region_metrics(ref, pred, 2)
    assert math.isnan(empty["Dice"])
    assert math.isnan(empty["IoU"])
    assert empty["TN"] == 6


@settings(max_examples=30)
@given(arrays(np.int8, (3, 4, 5), elements=st.integers(0, 3)), arrays(np.int8, (3, 4, 5), elements=st.integers(0, 3)))
def test_counts_partition_the_non_ignored_voxels(ref: np.ndarray, pred: np.ndarray) -> None:
    m = region_metrics(ref, pred, (1, 2), ignore_mask=ref == 3)
    assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == int((ref != 3).sum())
    assert math.isnan(m["Dice"]) or 0 <= m["Dice"] <= 1
    assert math.isnan(m["Dice"]) or m["IoU"] <= m["Dice"] + 1e-12


def test_regions_are_evaluated_for_region_datasets() -> None:
    assert evaluated_labels(LABELS) == (1, 2)
    assert evaluated_labels(REGIONS) == ((1, 2, 3), (2, 3), 3)


def test_summary_layout_means_and_round_trip(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pairs(tmp_path, seed=0)
    summary = evaluate_folder(pred_dir, ref_dir, LABELS)
    assert [Path(c.prediction_file).name for c in summary.cases] == [f"case_{i}.nii.gz" for i in range(3)]
    assert math.isnan(summary.cases[0].metrics["2"]["Dice"])  # label 2 empty in case 0 ...
    per_case = [c.metrics["2"]["Dice"] for c in summary.cases[1:]]
    assert summary.mean["2"]["Dice"] == pytest.approx(np.mean(per_case))  # ... and skipped in the mean
    assert summary.mean_dice == pytest.approx((summary.mean["1"]["Dice"] + summary.mean["2"]["Dice"]) / 2)
    summary.save(tmp_path / "summary.json")
    data = json.loads((tmp_path / "summary.json").read_text())
    assert sorted(data) == ["foreground_mean", "mean", "metric_per_case"]
    assert sorted(data["metric_per_case"][0]) == ["metrics", "prediction_file", "reference_file"]
    loaded = EvaluationSummary.load(tmp_path / "summary.json")
    assert loaded.mean_dice == pytest.approx(summary.mean_dice)
    assert loaded.labels == ("1", "2")


def test_workers_give_the_same_summary(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pairs(tmp_path, seed=1)
    one = evaluate_folder(pred_dir, ref_dir, REGIONS).to_json()
    two = evaluate_folder(pred_dir, ref_dir, REGIONS, num_workers=2).to_json()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert sorted(one["mean"]) == ["(1, 2, 3)", "(2, 3)", "3"]


def test_missing_predictions_are_an_error_unless_allowed(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pairs(tmp_path, seed=2)
    (pred_dir / "case_1.nii.gz").unlink()
    with pytest.raises(EvaluationError, match=r"1 of 3 reference\(s\) .* have no prediction .*: case_1.nii.gz; finish"):
        evaluate_folder(pred_dir, ref_dir, LABELS)
    summary = evaluate_folder(pred_dir, ref_dir, LABELS, allow_missing=True)
    assert len(summary.cases) == 2


def test_pairing_errors(tmp_path: Path) -> None:
    pred_dir, ref_dir = _write_pairs(tmp_path, seed=3)
    (ref_dir / "case_2.nii.gz").unlink()
    with pytest.raises(EvaluationError, match=r"1 prediction\(s\) in .* have no reference .*: case_2.nii.gz"):
        evaluate_folder(pred_dir, ref_dir, LABELS)
    with pytest.raises(EvaluationError, match=r"prediction folder .*nowhere does not exist"):
        evaluate_folder(tmp_path / "nowhere", ref_dir, LABELS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match=r"no prediction files ending in '.nii.gz'"):
        evaluate_folder(empty, empty, LABELS)


@pytest.mark.parity
@pytest.mark.parametrize("spec", [LABELS, REGIONS], ids=["labels", "regions"])
def test_summary_equals_nnunets(tmp_path: Path, spec: DatasetSpec) -> None:
    evaluation = pytest.importorskip("nnunetv2.evaluation.evaluate_predictions")
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    pred_dir, ref_dir = _write_pairs(tmp_path, seed=4)
    ours = evaluate_folder(pred_dir, ref_dir, spec).to_json()
    regions = list(evaluated_labels(spec))
    evaluation.compute_metrics_on_folder(str(ref_dir), str(pred_dir), str(tmp_path / "nn.json"), SimpleITKIO(),
                                         ".nii.gz", regions, spec.ignore_label, num_processes=1, chill=False)  # fmt: skip
    theirs = json.loads((tmp_path / "nn.json").read_text())
    ours_text = json.loads(json.dumps(ours, sort_keys=True))
    for case_ours, case_theirs in zip(ours_text["metric_per_case"], theirs["metric_per_case"], strict=True):
        assert Path(case_ours["prediction_file"]).name == Path(case_theirs["prediction_file"]).name
        np.testing.assert_equal(case_ours["metrics"], case_theirs["metrics"])
    np.testing.assert_equal(ours_text["mean"], theirs["mean"])
    np.testing.assert_equal(ours_text["foreground_mean"], theirs["foreground_mean"])
