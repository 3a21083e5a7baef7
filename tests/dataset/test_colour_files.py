"""Colour-format datasets (PNG, BMP, TIFF) whose cases give every channel in one file ``<case>_0000``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnseg.dataset import Case, DatasetSpec, RawDataset, verify_folder
from nnseg.dataset._case import read_case_images
from nnseg.errors import DatasetError, DatasetLayoutError

SIZE = (6, 7)  # (y, x)
RGB = {"0": "R", "1": "G", "2": "B"}


def _pixels(seed: int, colours: int) -> np.ndarray:
    shape = SIZE if colours == 1 else (*SIZE, colours)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write_image(path: Path, colours: int = 3, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(seed, colours)).save(path)
    return path


def _write_label(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.resize(np.array([0, 1, 2], np.uint8), SIZE)).save(path)
    return path


def _dataset(
    root: Path, cases: dict[str, tuple[int, ...]], channels: dict[str, str] = RGB, ending: str = ".png"
) -> Path:
    """Write a dataset: ``cases`` maps a case id to the colour count of each of its files (_0000, _0001, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    for case_id, files in cases.items():
        for channel, colours in enumerate(files):
            _write_image(root / "imagesTr" / f"{case_id}_{channel:04d}{ending}", colours, seed=channel)
        _write_label(root / "labelsTr" / f"{case_id}{ending}")
    spec = {
        "channel_names": channels,
        "labels": {"background": 0, "road": 1, "car": 2},
        "numTraining": len(cases),
        "file_ending": ending,
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


@pytest.mark.parametrize("ending", [".png", ".bmp", ".tif"])
def test_one_rgb_file_per_case_is_a_dataset_of_three_channels(tmp_path: Path, ending: str) -> None:
    root = _dataset(tmp_path / "Dataset120_Roads", {"a": (3,), "b": (3,)}, ending=ending)
    dataset = RawDataset.from_folder(root)
    assert [c.image_paths for c in dataset] == [
        (root / f"imagesTr/a_0000{ending}",),
        (root / f"imagesTr/b_0000{ending}",),
    ]
    assert dataset.verify().problems == ()
    images, geometry = read_case_images(dataset["a"], dataset.spec.channel_names)
    assert images.shape == (3, 1, *SIZE)
    np.testing.assert_array_equal(images[:, 0], np.moveaxis(_pixels(0, 3), -1, 0))
    assert geometry.ndim == 2


def test_one_grey_file_per_channel_still_works(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset121_Grey", {"a": (1, 1, 1)})
    assert RawDataset.from_folder(root)["a"].num_channels == 3
    assert verify_folder(root).problems == ()


def test_mixed_forms_are_refused(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset122_Mixed", {"a": (3,), "b": (1, 1, 1), "c": (3,)})
    with pytest.raises(
        DatasetLayoutError,
        match=(
            r"imagesTr/: 2 case\(s\) give only <case>_0000.png, which must then hold all 3 channels as colours \(e.g. "
            r"\['a', 'c'\]\), but 1 case\(s\) give one file per channel \(e.g. \['b'\]\); expected one form for every "
            r"case. Add the missing channel files \(e.g. a_0001.png\), or give every case as one colour file."
        ),
    ):
        RawDataset.from_folder(root)


def test_a_grey_file_where_rgb_is_declared(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset123_Grey", {"a": (3,), "b": (1,)})
    dataset = RawDataset.from_folder(root)  # the layout cannot tell without reading
    message = (
        "case 'b': imagesTr/b_0000.png holds 1 colour channel(s) but dataset.json declares 3 channel(s) "
        "['R', 'G', 'B']; expected one file with 3 colours (RGB). Convert it, e.g. "
        "Image.open(p).convert('RGB') in Pillow, or fix 'channel_names' in dataset.json."
    )
    assert [p.message for p in dataset.verify().errors] == [message]
    with pytest.raises(
        DatasetError,
        match=r"case 'b': .*b_0000.png holds 1 colour channel\(s\) but dataset.json "
        r"declares 3 channel\(s\) \['R', 'G', 'B'\]; expected one file with 3 colours \(RGB\)",
    ):
        read_case_images(dataset["b"], dataset.spec.channel_names)


def test_an_rgb_file_where_one_channel_is_declared(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset124_One", {"a": (3,)}, channels={"0": "grey"})
    assert [p.message for p in verify_folder(root).errors] == [
        "case 'a': imagesTr/a_0000.png holds 3 colour channel(s) but dataset.json declares 1 channel(s) ['grey']; "
        "expected a grey file. Convert it to grey, e.g. Image.open(p).convert('L') in Pillow, or fix "
        "'channel_names' in dataset.json."
    ]


def test_an_rgb_file_among_channel_files(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset125_Some", {"a": (1, 3)}, channels={"0": "x", "1": "y"})
    assert [p.message for p in verify_folder(root).errors] == [
        "case 'a': image files ['a_0000.png', 'a_0001.png'] hold 4 channels in total (a colour file gives one "
        "channel per colour) but dataset.json declares 2 channel(s) ['x', 'y']; expected one grey file per "
        "channel. Convert the colour files to grey, e.g. Image.open(p).convert('L') in Pillow, or fix "
        "'channel_names' in dataset.json."
    ]


def test_a_missing_channel_file_in_a_colour_format_dataset_says_both_forms(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset126_Gap", {"a": (1, 1, 1), "b": (1, 1)})
    with pytest.raises(
        DatasetLayoutError,
        match=(
            r"case 'b': found 2 of 3 channel file\(s\) in imagesTr/ \['b_0000.png', 'b_0001.png'\]; expected "
            r"\['b_0000.png', 'b_0001.png', 'b_0002.png'\] \(or one colour file b_0000.png holding every channel\)"
        ),
    ):
        RawDataset.from_folder(root)


def test_one_file_of_several_channels_needs_a_colour_format(tmp_path: Path) -> None:
    spec = DatasetSpec(
        channel_names=("R", "G", "B"), labels={"background": 0, "a": 1}, num_training=1, file_ending=".nii.gz"
    )
    with pytest.raises(
        DatasetError,
        match=r"has 1 image file\(s\) \(a_0000.nii.gz\) but the spec declares 3 "
        r"channel\(s\) \['R', 'G', 'B'\]; expected one image file per channel \(or one PNG, BMP or "
        r"TIFF colour file holding every channel\)",
    ):
        RawDataset.from_cases(spec, [Case("a", ("a_0000.nii.gz",), "a.nii.gz")])
    png = DatasetSpec(
        channel_names=("R", "G", "B"), labels={"background": 0, "a": 1}, num_training=1, file_ending=".png"
    )
    assert RawDataset.from_cases(png, [Case("a", ("a_0000.png",), "a.png")]).case_ids == ("a",)


def test_read_case_images_checks_the_number_of_files(tmp_path: Path) -> None:
    case = Case("a", (tmp_path / "a_0000.nii.gz",))
    with pytest.raises(
        DatasetError,
        match=r"case 'a': 1 image file\(s\) \(a_0000.nii.gz\) but dataset.json declares "
        r"2 channel\(s\) \['x', 'y'\]; expected files <case>_0000 ... <case>_0001",
    ):
        read_case_images(case, ("x", "y"))


def test_the_dataset_key_may_list_one_colour_file(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset127_Key", {"a": (3,)})
    spec = json.loads((root / "dataset.json").read_text())
    spec["dataset"] = {"a": {"images": ["imagesTr/a_0000.png"], "label": "labelsTr/a.png"}}
    (root / "dataset.json").write_text(json.dumps(spec))
    dataset = RawDataset.from_folder(root)
    assert dataset["a"].image_paths == (root / "imagesTr/a_0000.png",)
    assert dataset.verify().ok


def test_nnunet_natural_image_reader_setting_is_accepted_silently(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "Dataset128_Reader", {"a": (3,)})
    spec = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**spec, "overwrite_image_reader_writer": "NaturalImage2DIO"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RawDataset.from_folder(root).layout_warnings == ()
    (root / "dataset.json").write_text(json.dumps({**spec, "overwrite_image_reader_writer": "NibabelIO"}))
    with pytest.warns(
        UserWarning,
        match=r"overwrite_image_reader_writer is 'NibabelIO'; nnseg reads every file "
        r"with SimpleITK \(PNG, BMP, TIFF with Pillow and tifffile\) and ignores this setting",
    ):
        RawDataset.from_folder(root)
