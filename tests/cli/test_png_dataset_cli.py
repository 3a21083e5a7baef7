"""A 2D PNG dataset goes through the whole pipeline: synth, plan, preprocess, train 2d a few steps, predict."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import train_tiny_2d

from nnseg.cli import main as cli
from nnseg.io import read_segmentation


@pytest.mark.slow
def test_png_dataset_trains_and_predicts_2d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "Dataset002_Png"
    assert cli.main(["synth", str(tmp_path), "--two-d", "--file-ending", ".png", "--num-cases", "4", "--shape", "40",
                     "40", "--spacing", "1", "1", "--num-test-cases", "1", "--name", raw.name]) == 0  # fmt: skip
    run = train_tiny_2d(raw, tmp_path / "work")
    out = tmp_path / "pred"
    assert cli.main(["predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(run), "-f", "all",
                     "--device", "cpu", "--no-tta"]) == 0  # fmt: skip
    predicted, _ = read_segmentation(out / "case_004.png")
    reference, _ = read_segmentation(raw / "labelsTs" / "case_004.png")
    assert predicted.shape == reference.shape == (1, 1, *reference.shape[2:])
    capsys.readouterr()
