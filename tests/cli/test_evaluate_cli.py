"""``nnseg evaluate PRED REF``: summary.json, the dataset.json lookup, and missing predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnseg.cli import main as cli
from nnseg.io import ImageGeometry, write_segmentation


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the subcommand if nnseg/cli/main.py does not list it yet."""
    if "nnseg.cli._evaluate" not in cli.SUBCOMMAND_MODULES:
        monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "nnseg.cli._evaluate"))


def _dataset(root: Path) -> tuple[Path, Path]:
    (root / "raw" / "labelsTs").mkdir(parents=True)
    (root / "pred").mkdir()
    (root / "raw" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 2,
        "labels": {"background": 0, "liver": 1}, "file_ending": ".nii.gz"}))  # fmt: skip
    geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
    ref = np.zeros((4, 5, 6), np.uint8)
    ref[1:3, 1:4, 1:5] = 1
    pred = np.zeros_like(ref)
    pred[1:3, 1:4, 2:5] = 1
    for case in ("a", "b"):
        write_segmentation(ref, root / "raw" / "labelsTs" / f"{case}.nii.gz", geometry)
    write_segmentation(pred, root / "pred" / "a.nii.gz", geometry)
    return root / "pred", root / "raw" / "labelsTs"


def test_evaluate_writes_nnunets_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = _dataset(tmp_path)
    assert cli.main(["evaluate", str(pred), str(ref)]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 reference(s)" in err
    assert "have no prediction" in err
    assert cli.main(["evaluate", str(pred), str(ref), "--allow-missing"]) == 0
    out = capsys.readouterr().out
    assert "label 1: Dice 0.8571" in out  # TP 18, FP 0, FN 6
    assert "1 case(s), mean Dice 0.8571" in out
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["mean"]["1"]["TP"] == 18
    assert summary["mean"]["1"]["FN"] == 6


def test_dataset_json_must_be_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    assert cli.main(["evaluate", str(tmp_path / "p"), str(tmp_path / "r")]) == 2
    assert "no dataset.json found" in capsys.readouterr().err
