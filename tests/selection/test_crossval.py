"""Cross-validation accumulation: layout, reuse, errors naming folds and cases, CLI, and nnunetv2 parity."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from selection_helpers import CASES, SPEC, make_run, make_work

from nnseg.cli import main as cli
from nnseg.selection import SelectionError, accumulate_crossval


def test_gathers_every_fold_and_evaluates(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    run = make_run(work, "3d_fullres", quality=0.6, folds=(0, 1, 2))
    ref = work.raw_dataset_dir() / "labelsTr"
    cv = accumulate_crossval(run, ref, folds=(0, 1, 2))
    assert cv.folder == run / "crossval_results_folds_0_1_2"
    assert sorted(p.name for p in cv.folder.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in CASES]
    assert cv.has_probabilities
    assert len(cv.summary.cases) == len(CASES)
    assert 0 < cv.score < 1
    saved = json.loads((cv.folder / "summary.json").read_text())
    assert math.isclose(saved["foreground_mean"]["Dice"], cv.score)
    mtime = (cv.folder / "summary.json").stat().st_mtime_ns
    again = accumulate_crossval(run, ref, folds=(0, 1, 2))
    assert again.score == cv.score
    assert (cv.folder / "summary.json").stat().st_mtime_ns == mtime  # nothing new: the summary is reused


def test_missing_unfinished_and_overlapping_folds_are_named(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    run = make_run(work, "2d", quality=0.6, folds=(0, 1))
    ref = work.raw_dataset_dir() / "labelsTr"
    with pytest.raises(SelectionError, match=r"fold 2 of .* is missing"):
        accumulate_crossval(run, ref, folds=(0, 1, 2))
    (run / "fold_1" / "checkpoint_final.pt").unlink()
    with pytest.raises(SelectionError, match=r"fold 1 of .* is unfinished \(no checkpoint_final.pt\)"):
        accumulate_crossval(run, ref, folds=(0, 1))
    (run / "fold_1" / "checkpoint_final.pt").write_bytes(b"")
    shutil.copy(run / "fold_0" / "validation" / "case_0.nii.gz", run / "fold_1" / "validation" / "case_0.nii.gz")
    with pytest.raises(SelectionError, match=r"case case_0 is in the validation of fold 0 and of fold 1"):
        accumulate_crossval(run, ref, folds=(0, 1))
    assert not (run / "crossval_results_folds_0_1").exists()


def test_folds_with_other_plans_are_refused(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    run = make_run(work, "2d", quality=0.6, folds=(0, 1))
    data = json.loads((run / "fold_1" / "run.json").read_text())
    (run / "fold_1" / "run.json").write_text(json.dumps({**data, "plans_hash": "other"}))
    with pytest.raises(SelectionError, match=r"fold 1 of .* was trained with other plans than fold 0"):
        accumulate_crossval(run, work.raw_dataset_dir() / "labelsTr", folds=(0, 1))


def test_cli_crossval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = make_work(tmp_path)
    run = make_run(work, "2d", quality=0.6, folds=(0, 1))
    assert cli.main(["crossval", str(run), "-f", "0", "1"]) == 0
    assert "foreground-mean Dice" in capsys.readouterr().out
    assert (run / "crossval_results_folds_0_1" / "summary.json").is_file()
    assert cli.main(["crossval", str(run), "-f", "0", "1", "3"]) == 2
    assert "fold 3 of" in capsys.readouterr().err


@pytest.mark.parity
def test_summary_equals_nnunetv2_accumulate_cv_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accumulate = pytest.importorskip("nnunetv2.evaluation.accumulate_cv_results")
    work = make_work(tmp_path)
    run = make_run(work, "3d_fullres", quality=0.5, folds=(0, 1, 2))
    ours = accumulate_crossval(run, work.raw_dataset_dir() / "labelsTr", folds=(0, 1, 2))
    SPEC.save(run / "dataset.json")
    plans = {"dataset_name": "Dataset999_Sel", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
             "label_manager": "LabelManager", "configurations": {}}  # fmt: skip
    (run / "plans.json").write_text(json.dumps(plans))
    monkeypatch.setattr(accumulate, "nnUNet_raw", str(tmp_path / "raw"))
    accumulate.accumulate_cv_results(str(run), str(tmp_path / "theirs"), [0, 1, 2], num_processes=1)
    theirs = json.loads((tmp_path / "theirs" / "summary.json").read_text())
    mine = json.loads((ours.folder / "summary.json").read_text())
    assert _flat(mine["foreground_mean"]) == pytest.approx(_flat(theirs["foreground_mean"]), nan_ok=True)
    assert _flat(mine["mean"]) == pytest.approx(_flat(theirs["mean"]), nan_ok=True)
    strip = [{**case, "reference_file": Path(case["reference_file"]).name,
              "prediction_file": Path(case["prediction_file"]).name} for case in mine["metric_per_case"]]  # fmt: skip
    other = [{**case, "reference_file": Path(case["reference_file"]).name,
              "prediction_file": Path(case["prediction_file"]).name} for case in theirs["metric_per_case"]]  # fmt: skip
    assert strip == other


def _flat(tree: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = float(value)
    return out
