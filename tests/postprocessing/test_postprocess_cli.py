"""``nnseg postprocess determine`` / ``apply``: outputs, sharding, and exit code 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnseg.cli import main as cli
from nnseg.io import ImageGeometry, read_segmentation, write_segmentation

GEOMETRY = ImageGeometry.identity((1.0, 1.0, 1.0))


def _folders(root: Path) -> tuple[Path, Path]:
    (root / "raw" / "labelsTr").mkdir(parents=True)
    (root / "pred").mkdir()
    (root / "raw" / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 2,
        "labels": {"background": 0, "a": 1, "b": 2}, "file_ending": ".nii.gz"}))  # fmt: skip
    for case in ("x", "y"):
        ref = np.zeros((3, 8, 8), np.uint8)
        ref[1, 1:4, 1:4] = 1
        ref[1, 2, 2] = 2
        pred = ref.copy()
        pred[2, 7, 7] = 1  # a stray voxel: removing it helps
        write_segmentation(ref, root / "raw" / "labelsTr" / f"{case}.nii.gz", GEOMETRY)
        write_segmentation(pred, root / "pred" / f"{case}.nii.gz", GEOMETRY)
    return root / "pred", root / "raw" / "labelsTr"


def test_determine_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = _folders(tmp_path)
    pp = tmp_path / "pp.json"
    assert cli.main(["postprocess", "determine", str(pred), str(ref), "-o", str(pp)]) == 0
    decision = json.loads(pp.read_text())
    assert decision["steps"][0] == {"operation": "keep_largest_component", "labels": [1, 2]}
    assert (pred / "postprocessed" / "x.nii.gz").is_file()
    assert "kept" in capsys.readouterr().out
    out = tmp_path / "out"
    args = [
        "postprocess",
        "apply",
        "-i",
        str(pred),
        "-o",
        str(out),
        "--pp",
        str(pp),
        "-d",
        str(ref.parent / "dataset.json"),
    ]
    assert cli.main([*args, "--num-parts", "2", "--part-id", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["y.nii.gz"]
    assert cli.main(args) == 0
    seg, _ = read_segmentation(out / "x.nii.gz")
    assert seg[0, 2, 7, 7] == 0


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, ref = _folders(tmp_path)
    (ref / "y.nii.gz").unlink()
    assert cli.main(["postprocess", "determine", str(pred), str(ref), "-o", str(tmp_path / "pp.json")]) == 2
    err = capsys.readouterr().err
    assert "PostprocessingError: cannot determine postprocessing: 1 prediction(s)" in err
    assert "y.nii.gz" in err
    assert not (tmp_path / "pp.json").exists()
    (tmp_path / "pp.json").write_text(json.dumps({"format_version": 1, "labels": ["1"], "steps": []}))
    args = ["postprocess", "apply", "-i", str(pred), "-o", str(tmp_path / "out"), "--pp", str(tmp_path / "pp.json"),
            "-d", str(ref.parent / "dataset.json")]  # fmt: skip
    assert cli.main(args) == 2
    assert "determined for labels ['1'] but the dataset" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
