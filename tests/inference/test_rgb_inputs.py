"""RGB natural images with one file per case: prediction inputs, and the whole pipeline from the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline_helpers import train_tiny_2d

from nnseg.cli import main as cli
from nnseg.dataset import DatasetSpec
from nnseg.inference import PredictionError
from nnseg.inference._folder import list_input_cases
from nnseg.io import read_segmentation


def _spec(ending: str = ".png") -> DatasetSpec:
    return DatasetSpec(
        channel_names=("R", "G", "B"), labels={"background": 0, "road": 1}, num_training=1, file_ending=ending
    )


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # listing reads no file
    return folder


def test_one_colour_file_per_case_is_a_complete_input(tmp_path: Path) -> None:
    folder = _touch(tmp_path / "in", "a_0000.png", "b_0000.png", "b_0001.png", "b_0002.png")
    cases = list_input_cases(folder, _spec())
    assert [(c.case_id, [p.name for p in c.image_paths]) for c in cases] == [
        ("a", ["a_0000.png"]),
        ("b", ["b_0000.png", "b_0001.png", "b_0002.png"]),
    ]


def test_a_partial_set_of_channel_files_is_refused(tmp_path: Path) -> None:
    folder = _touch(tmp_path / "in", "a_0000.png", "b_0000.png", "b_0001.png")
    with pytest.raises(
        PredictionError,
        match=r"1 case\(s\) do not have the right channels: b: missing channel "
        r"file\(s\) \[2\]; the model expects exactly 3 channel\(s\) \['R', 'G', 'B'\] \(_0000 to "
        r"_0002, or one colour file _0000\)",
    ):
        list_input_cases(folder, _spec())


def test_one_file_of_a_non_colour_format_lacks_channels(tmp_path: Path) -> None:
    folder = _touch(tmp_path / "in", "a_0000.nii.gz")
    with pytest.raises(
        PredictionError,
        match=r"a: missing channel file\(s\) \[1, 2\]; the model expects exactly 3 "
        r"channel\(s\) \['R', 'G', 'B'\] \(_0000 to _0002\)",
    ):
        list_input_cases(folder, _spec(".nii.gz"))


@pytest.mark.slow
def test_rgb_dataset_from_synth_to_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "Dataset003_Rgb"
    assert cli.main(["synth", str(tmp_path), "--two-d", "--file-ending", ".png", "--rgb", "--num-cases", "4",
                     "--shape", "40", "40", "--num-test-cases", "1", "--name", raw.name]) == 0  # fmt: skip
    assert json.loads((raw / "dataset.json").read_text())["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert cli.main(["verify", str(raw)]) == 0
    run = train_tiny_2d(raw, tmp_path / "work")
    inputs = tmp_path / "inputs"
    shutil.copytree(raw / "imagesTs", inputs)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(inputs / "grey_0000.png")  # one colour where RGB is expected
    out = tmp_path / "pred"
    assert cli.main(["predict", "-i", str(inputs), "-o", str(out), "-m", str(run), "-f", "all", "--device", "cpu",
                     "--no-tta"]) == 1  # fmt: skip
    assert "grey_0000.png holds 1 colour channel(s) but dataset.json declares 3 channel(s)" in capsys.readouterr().err
    predicted, _ = read_segmentation(out / "case_004.png")
    reference, _ = read_segmentation(raw / "labelsTs" / "case_004.png")
    assert predicted.shape == reference.shape == (1, 1, *reference.shape[2:])
    assert cli.main(["overlay", str(raw / "imagesTs"), str(out), "-o", str(tmp_path / "overlays")]) == 0
    assert (tmp_path / "overlays" / "case_004.png").is_file()  # the RGB image is shown as its mean colour
    summary = tmp_path / "summary.json"
    assert cli.main(["evaluate", str(out), str(raw / "labelsTs"), "-o", str(summary)]) == 0
    assert [
        case["reference_file"].endswith("case_004.png") for case in json.loads(summary.read_text())["metric_per_case"]
    ] == [True]
    capsys.readouterr()
