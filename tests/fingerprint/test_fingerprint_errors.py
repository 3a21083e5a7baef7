"""Bad input: every error and warning of fingerprint extraction, with its message pinned."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nnseg.fingerprint._extract as extract_module
from nnseg.dataset import RawDataset
from nnseg.errors import ConfigError, FingerprintError
from nnseg.fingerprint import extract_fingerprint, fingerprint_case
from nnseg.io import ImageGeometry

WriteRaw = Callable[..., Path]


def _two_cases(image: np.ndarray, seg: np.ndarray) -> dict[str, Any]:
    return {"p": ([image], seg, (1.0, 1.0, 1.0)), "q": ([image + 1], seg, (1.0, 1.0, 1.0))}


def test_no_foreground_in_any_case_is_an_error(tmp_path: Path, write_raw_dataset: WriteRaw) -> None:
    image = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 1
    folder = write_raw_dataset(tmp_path / "ds", _two_cases(image, np.zeros((4, 5, 6), np.uint8)))
    with pytest.raises(
        FingerprintError, match=r"no foreground: none of the 2 training case\(s\) has a voxel with label > 0"
    ):
        extract_fingerprint(RawDataset.from_folder(folder), num_samples=10)


def test_some_cases_without_foreground_are_fine(hand_dataset: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fp = extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=10)
    assert fp.num_cases == 3  # case c has no foreground but keeps its spacing and shape


def test_channel_constant_everywhere_is_a_warning(
    tmp_path: Path, write_raw_dataset: WriteRaw, hand_cases: dict[str, Any]
) -> None:
    cases = hand_cases
    for case_id, (images, seg, spacing) in cases.items():
        cases[case_id] = ([images[0], np.full(seg.shape, 7.0, np.float32)], seg, spacing)
    folder = write_raw_dataset(tmp_path / "ds", cases, channel_names=("T2", "ADC"))
    with pytest.warns(
        UserWarning, match=r"channel 1 \('ADC'\) has the same foreground intensity 7 in every sampled voxel"
    ) as record:
        fp = extract_fingerprint(RawDataset.from_folder(folder), num_samples=10)
    assert [Path(w.filename).name for w in record] == [Path(__file__).name]  # points at the caller
    assert fp.intensity_stats[1].std == 0
    assert fp.intensity_stats[0].std > 0


def test_zero_size_array_is_an_error() -> None:
    with pytest.raises(FingerprintError, match=r"images have zero size or no spatial axis \(shape \(1, 0, 4, 4\)\)"):
        fingerprint_case(np.zeros((1, 0, 4, 4)), np.zeros((1, 0, 4, 4)), (1.0, 1.0, 1.0), num_samples=5)


def test_zero_size_image_file_is_an_error(hand_dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def empty_read(paths: Any) -> tuple[np.ndarray, ImageGeometry]:
        return np.zeros((2, 0, 6, 8), np.float32), ImageGeometry.identity((1.0, 1.0, 1.0))

    monkeypatch.setattr(extract_module, "read_images", empty_read)
    with pytest.raises(FingerprintError, match=r"case 'a': image file\(s\) .*a_0000.nii.gz.* have zero size"):
        extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=5)


def test_empty_file_is_an_error_naming_the_case(hand_dataset: Path) -> None:
    (hand_dataset / "imagesTr" / "b_0001.nii.gz").write_bytes(b"")
    with pytest.raises(FingerprintError, match=r"case 'b': image file .*b_0001.nii.gz is empty \(0 bytes\)"):
        extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=5)


def test_unreadable_case_file_is_an_error_naming_the_case(hand_dataset: Path) -> None:
    (hand_dataset / "labelsTr" / "c.nii.gz").write_bytes(b"this is not a NIfTI file")
    with pytest.raises(FingerprintError, match=r"case 'c': cannot read image file .*c.nii.gz"):
        extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=5)


def test_unreadable_case_in_a_worker_is_an_error_naming_the_case(hand_dataset: Path, tmp_path: Path) -> None:
    (hand_dataset / "imagesTr" / "a_0000.nii.gz").write_bytes(b"garbage")
    with pytest.raises(FingerprintError, match=r"case 'a': cannot read image file"):
        extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=5, cache_dir=tmp_path / "cache",
                            num_workers=2)  # fmt: skip
    assert not list((tmp_path / "cache" / "cases").glob("a.*"))  # nothing cached for the broken case


def test_label_of_other_shape_is_an_error() -> None:
    with pytest.raises(
        FingerprintError, match=r"label map shape \(1, 4, 4, 5\) does not match the image shape \(1, 4, 4, 4\)"
    ):
        fingerprint_case(np.ones((1, 4, 4, 4)), np.ones((1, 4, 4, 5)), (1.0, 1.0, 1.0), num_samples=5)


def test_spacing_of_wrong_length_is_an_error() -> None:
    with pytest.raises(
        FingerprintError, match=r"spacing \[1.0, 1.0\] has 2 values; expected one per spatial axis \(3\)"
    ):
        fingerprint_case(np.ones((1, 4, 4, 4)), np.ones((1, 4, 4, 4)), (1.0, 1.0), num_samples=5)


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_bad_num_samples_and_num_workers_are_config_errors(hand_dataset: Path, value: Any) -> None:
    dataset = RawDataset.from_folder(hand_dataset)
    with pytest.raises(
        ConfigError,
        match=rf"extract_fingerprint: num_samples must be an integer >= 1; got {value!r}\. Set num_samples=1 or more",
    ):
        extract_fingerprint(dataset, num_samples=value)
    with pytest.raises(
        ConfigError,
        match=rf"extract_fingerprint: num_workers must be an integer >= 1; got {value!r}\. Set num_workers=1 or more",
    ):
        extract_fingerprint(dataset, num_workers=value)


def test_label_file_of_other_shape_is_an_error_naming_the_case(tmp_path: Path, write_raw_dataset: WriteRaw) -> None:
    image = np.ones((4, 5, 6), np.float32)
    cases = {"p": ([image], np.ones((4, 5, 7), np.uint8), (1.0, 1.0, 1.0))}
    folder = write_raw_dataset(tmp_path / "ds", cases)
    with pytest.raises(FingerprintError, match=r"case 'p': image file\(s\) .*p_0000.nii.gz give shape \(1, 4, 5, 6\) "
                       r"and label file .*p.nii.gz gives \(1, 4, 5, 7\); expected 1 channel\(s\)"):  # fmt: skip
        extract_fingerprint(RawDataset.from_folder(folder), num_samples=5)
