"""``nnseg demo`` ends with the HTML report (with the test-set evaluation) and prints its path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnseg.cli import main as cli


@pytest.mark.slow
def test_demo_writes_the_report_and_timings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", str(tmp_path), "--num-cases", "4", "--num-workers", "1", "--small"]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "report.html"
    assert f"the report is {report.resolve()}" in out
    page = report.read_text()
    assert "test cases (imagesTs)" in page
    assert '<section class="worst">' in page
    assert "Dice organ" in page  # the table names the labels from dataset.json
    assert "1 organ" in out
    timings = json.loads((tmp_path / "work" / "timings.json").read_text())
    assert {"extract the fingerprint", "predict the held-out test cases", "evaluate against labelsTs"} <= set(timings)


def test_synth_lesion_scale_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["synth", str(tmp_path), "--num-cases", "1", "--shape", "12", "20", "20", "--lesion-scale",
                     "2"]) == 0  # fmt: skip
    spec = json.loads((tmp_path / "Dataset001_Synthetic" / "dataset.json").read_text())
    assert spec["nnseg_synthetic"]["lesion_scale"] == 2.0
    assert cli.main(["synth", str(tmp_path), "--lesion-scale", "9", "--name", "Dataset002_X"]) == 2
    assert "lesion_scale must be a number in [0.5, 2.5]; got 9.0" in capsys.readouterr().err
    assert cli.main(["synth", str(tmp_path / "p"), "--two-d", "--file-ending", ".png", "--num-cases", "1", "--shape",
                     "20", "20", "--spacing", "1", "1"]) == 0  # fmt: skip
    assert (tmp_path / "p" / "Dataset001_Synthetic" / "imagesTr" / "case_000_0000.png").is_file()
