"""DatasetSpec: parsing dataset.json (channels, labels, regions, ignore label) and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nnseg.dataset import DatasetSpec
from nnseg.errors import DatasetError


def _data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "channel_names": {"1": "ADC", "0": "T2"},
        "labels": {"background": 0, "PZ": 1, "TZ": 2},
        "numTraining": 32,
        "file_ending": ".nii.gz",
        "name": "Prostate",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_parses_channels_in_index_order_and_keeps_extra_keys() -> None:
    spec = DatasetSpec.from_dict(_data())
    assert spec.channel_names == ("T2", "ADC")
    assert spec.num_channels == 2
    assert spec.labels == {"background": 0, "PZ": 1, "TZ": 2}
    assert spec.all_labels == (0, 1, 2)
    assert spec.foreground_labels == (1, 2)
    assert spec.num_segmentation_heads == 3
    assert not spec.has_regions
    assert spec.ignore_label is None
    assert spec.extra == {"name": "Prostate"}
    assert DatasetSpec.from_dict(spec.to_dict()) == spec


def test_legacy_modality_key() -> None:
    spec = DatasetSpec.from_dict(_data(channel_names=None, modality={"0": "CT"}))
    assert spec.channel_names == ("CT",)
    assert "channel_names" in spec.to_dict()
    assert "modality" not in spec.to_dict()


def test_save_and_load(tmp_path: Path) -> None:
    spec = DatasetSpec.from_dict(_data())
    spec.save(tmp_path / "dataset.json")
    assert DatasetSpec.load(tmp_path / "dataset.json") == spec


def test_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{'labels': }")
    with pytest.raises(DatasetError, match=r"dataset\.json is not valid JSON \(Expecting property name"):
        DatasetSpec.load(tmp_path / "dataset.json")


def test_regions_with_regions_class_order() -> None:
    labels = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}
    spec = DatasetSpec.from_dict(_data(labels=labels, regions_class_order=[1, 2, 3]))
    assert spec.has_regions
    assert spec.labels["enhancing tumor"] == 3
    assert spec.foreground_regions == ((1, 2, 3), (2, 3), (3,))
    assert spec.num_segmentation_heads == 3
    assert spec.all_labels == (0, 1, 2, 3)
    assert json.loads(json.dumps(spec.to_dict()))["labels"]["tumor core"] == [2, 3]


def test_regions_need_regions_class_order() -> None:
    with pytest.raises(DatasetError, match="labels define regions .* but 'regions_class_order' is missing"):
        DatasetSpec.from_dict(_data(labels={"background": 0, "a": [1, 2], "b": 2}))


def test_regions_class_order_needs_one_entry_per_region() -> None:
    with pytest.raises(DatasetError, match=r"'regions_class_order' has 1 entries but there are 2 foreground regions"):
        DatasetSpec.from_dict(_data(labels={"background": 0, "a": [1, 2], "b": 2}, regions_class_order=[1]))


def test_regions_class_order_must_name_foreground_labels() -> None:
    with pytest.raises(
        DatasetError,
        match=r"'regions_class_order' \[1, 5\] contains \[5\], which is not a foreground "
        r"label value; expected values from \[1, 2\]",
    ):
        DatasetSpec.from_dict(_data(labels={"background": 0, "a": [1, 2], "b": 2}, regions_class_order=[1, 5]))


def test_region_labels_must_be_consecutive() -> None:
    with pytest.raises(
        DatasetError,
        match=r"label values must be consecutive integers starting at 0 \(the ignore label "
        r"included\); got \[0, 1, 3\]",
    ):
        DatasetSpec.from_dict(_data(labels={"background": 0, "a": [1, 3], "b": 3}, regions_class_order=[1, 3]))


def test_ignore_label_is_highest_and_counted_as_consecutive() -> None:
    spec = DatasetSpec.from_dict(_data(labels={"background": 0, "PZ": 1, "TZ": 2, "ignore": 3}))
    assert spec.ignore_label == 3
    assert spec.foreground_labels == (1, 2)
    assert spec.num_segmentation_heads == 3
    with pytest.raises(DatasetError, match=r"the ignore label must have the highest value \(2\); got 1"):
        DatasetSpec.from_dict(_data(labels={"background": 0, "ignore": 1, "TZ": 2}))
    with pytest.raises(DatasetError, match=r"consecutive integers starting at 0 .*got \[0, 1, 2, 4\]"):
        DatasetSpec.from_dict(_data(labels={"background": 0, "PZ": 1, "TZ": 2, "ignore": 4}))


def test_ignore_label_must_be_an_int() -> None:
    with pytest.raises(DatasetError, match=r"the ignore label must be a single int; got \(2, 3\)"):
        DatasetSpec.from_dict(_data(labels={"background": 0, "a": 1, "ignore": [2, 3]}))


def test_ignore_label_with_regions() -> None:
    labels = {"background": 0, "a": [1, 2], "b": 2, "ignore": 3}
    spec = DatasetSpec.from_dict(_data(labels=labels, regions_class_order=[1, 2]))
    assert spec.ignore_label == 3
    assert spec.all_labels == (0, 1, 2, 3)
    assert spec.foreground_labels == (1, 2)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ({"background": 0, "a": 2}, r"got \[0, 2\]\. Expected \[0, 1\]"),
        ({"background": 0, "a": 1, "b": 1}, r"label values \[0, 1, 1\] contain duplicates"),
        ({"a": 1, "background": 1}, r"labels must contain \"background\": 0; got background = 1"),
        ({"a": 0}, r"labels must contain \"background\": 0; got background = None"),
    ],
)
def test_plain_labels_must_be_consecutive_from_background(labels: dict[str, Any], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        DatasetSpec.from_dict(_data(labels=labels))


@pytest.mark.parametrize("value", ["1", 1.0, True, [], [1, "2"], {"v": 1}, None])
def test_label_value_must_be_int_or_region(value: Any) -> None:
    with pytest.raises(
        DatasetError,
        match=r"label 'organ' has value .*; expected an int \(e\.g\. 1\) or a non-empty "
        r"list of ints for a region \(e\.g\. \[1, 2\]\)\. Fix the 'labels' entry",
    ):
        DatasetSpec.from_dict(_data(labels={"background": 0, "organ": value}))


def test_nnunet_v1_labels_get_a_conversion_hint() -> None:
    with pytest.raises(
        DatasetError,
        match=r"'labels' maps values to names .* the nnU-Net v1 form; nnU-Net v2 maps names "
        r"to values",
    ):
        DatasetSpec.from_dict(_data(labels={"0": "background", "1": "liver"}))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"numTraining": None, "file_ending": None}, r"missing required key\(s\) 'numTraining', 'file_ending'"),
        ({"channel_names": None}, r"missing required key\(s\) 'channel_names'; a dataset\.json needs"),
        ({"numTraining": -1}, r"'numTraining' must be a non-negative int; got -1"),
        ({"numTraining": "3"}, r"'numTraining' must be a non-negative int; got '3'"),
        ({"file_ending": "nii.gz"}, r"'file_ending' must be a string such as \"\.nii\.gz\"; got 'nii\.gz'"),
        ({"channel_names": {"0": "T2", "2": "ADC"}}, r"'channel_names' keys must be 0\.\.1; got \['0', '2'\]"),
        ({"channel_names": {"a": "T2"}}, r"'channel_names' keys must be channel indices"),
        ({"channel_names": {}}, r"'channel_names' is empty"),
        ({"labels": [0, 1]}, r"'labels' must map name to value; got \[0, 1\]"),
        ({"regions_class_order": "1,2"}, r"'regions_class_order' must be a list of ints; got '1,2'"),
    ],
)
def test_bad_keys(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        DatasetSpec.from_dict(_data(**overrides), source="ds.json")


def test_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps(_data(numTraining=None)))
    with pytest.raises(DatasetError, match=rf"{tmp_path}/dataset\.json: missing required key\(s\) 'numTraining'"):
        DatasetSpec.load(tmp_path / "dataset.json")
    with pytest.raises(DatasetError, match=r"ds\.json: expected a JSON object; got list"):
        DatasetSpec.from_dict([], source="ds.json")  # type: ignore[arg-type]
