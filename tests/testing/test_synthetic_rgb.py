"""``make_synthetic_dataset(rgb=True)``: a 2D natural-image dataset with one RGB PNG per case."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nnseg.cli.main import main
from nnseg.dataset import RawDataset
from nnseg.errors import ConfigError
from nnseg.io import read_segmentation
from nnseg.testing import make_synthetic_dataset

TINY: dict[str, Any] = {"num_cases": 2, "num_test_cases": 1, "two_d": True, "file_ending": ".png", "shape": (24, 20)}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_rgb_dataset_has_one_colour_file_per_case(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, rgb=True, **TINY)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == [
        "imagesTr/case_000_0000.png",
        "imagesTr/case_001_0000.png",
        "imagesTs/case_002_0000.png",
        "labelsTr/case_000.png",
        "labelsTr/case_001.png",
        "labelsTs/case_002.png",
    ]
    spec = json.loads((folder / "dataset.json").read_text())
    assert spec["channel_names"] == {"0": "R", "1": "G", "2": "B"}
    assert spec["nnseg_synthetic"]["rgb"] is True
    rgb = _pixels(folder / "imagesTr/case_000_0000.png")
    assert rgb.dtype == np.uint8
    assert rgb.ndim == 3
    assert rgb.shape[-1] == 3
    label, _ = read_segmentation(folder / "labelsTr/case_000.png")
    assert label.shape == (1, 1, *rgb.shape[:2])
    assert np.array_equal(np.unique(label), [0, 1, 2])
    assert RawDataset.from_folder(folder).verify().problems == ()


def test_the_colours_derive_from_the_grey_dataset(tmp_path: Path) -> None:
    grey = _pixels(make_synthetic_dataset(tmp_path / "grey", **TINY) / "imagesTr/case_001_0000.png").astype(float)
    rgb = _pixels(make_synthetic_dataset(tmp_path / "rgb", rgb=True, **TINY) / "imagesTr/case_001_0000.png")
    np.testing.assert_array_equal(rgb[..., 0], grey)
    np.testing.assert_array_equal(rgb[..., 1], np.rint(0.75 * grey + 40.0))
    np.testing.assert_array_equal(rgb[..., 2], np.rint(255.0 - 0.6 * grey))


def test_grey_dataset_json_does_not_mention_rgb(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, **TINY)
    assert "rgb" not in json.loads((folder / "dataset.json").read_text())["nnseg_synthetic"]


@pytest.mark.parametrize(
    ("kwargs", "got"),
    [
        (
            {"two_d": False, "shape": (8, 24, 20), "file_ending": ".nii.gz"},
            "two_d=False, file_ending='.nii.gz', num_channels=1",
        ),
        ({"file_ending": ".nii.gz"}, "two_d=True, file_ending='.nii.gz', num_channels=1"),
        ({"num_channels": 2}, "two_d=True, file_ending='.png', num_channels=2"),
    ],
)
def test_rgb_needs_a_2d_png_dataset_of_one_grey_channel(tmp_path: Path, kwargs: dict[str, Any], got: str) -> None:
    match = (
        r"^make_synthetic_dataset: rgb=True writes 2D RGB PNG files derived from one grey image; expected "
        rf"two_d=True, file_ending='.png' and num_channels=1, got {got}\. CLI: nnseg synth OUT --two-d "
        r"--file-ending .png --rgb\.$"
    )
    with pytest.raises(ConfigError, match=match):
        make_synthetic_dataset(tmp_path, rgb=True, **{**TINY, **kwargs})
    assert not any(tmp_path.iterdir())


def test_rgb_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^make_synthetic_dataset: rgb must be True or False; got 'yes'"):
        make_synthetic_dataset(tmp_path, rgb="yes", **TINY)


def test_cli_rgb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path), "--two-d", "--file-ending", ".png", "--rgb", "--num-cases", "1",
                 "--shape", "20", "20"]) == 0  # fmt: skip
    assert _pixels(tmp_path / "Dataset001_Synthetic/imagesTr/case_000_0000.png").shape[-1] == 3
    assert main(["synth", str(tmp_path / "x"), "--rgb", "--num-cases", "1"]) == 2
    assert "rgb=True writes 2D RGB PNG files" in capsys.readouterr().err


@pytest.mark.parity
def test_nnunetv2_accepts_the_rgb_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = make_synthetic_dataset(tmp_path, rgb=True, **TINY)
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem, e.g. a wrong channel count
    assert (folder / "dataset.json").is_file()
