"""``nnseg overlay``: pictures written, bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnseg.cli import main as cli
from nnseg.io import ImageGeometry, write_segmentation
from nnseg.testing import make_synthetic_dataset


def test_overlay_writes_one_png_per_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_synthetic_dataset(tmp_path, num_cases=2, shape=(10, 20, 20))
    assert cli.main(["overlay", str(raw), str(raw), "-o", str(tmp_path / "out"), "--slice", "3"]) == 0
    assert "wrote 2 overlay picture(s)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case_000.png", "case_001.png"]


def test_overlay_of_mismatched_geometry_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = make_synthetic_dataset(tmp_path, num_cases=1, shape=(10, 20, 20))
    labels = tmp_path / "pred"
    labels.mkdir()
    write_segmentation(np.zeros((4, 5, 6), np.uint8), labels / "case_000.nii.gz", ImageGeometry.identity((1, 1, 1)))
    assert cli.main(["overlay", str(raw), str(labels), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnseg overlay: error: DatasetError: overlay: ")
    assert "pred/case_000.nii.gz has shape (4, 5, 6)" in err
    assert "imagesTr/case_000_0000.nii.gz" in err
