"""RawDataset: reading the nnU-Net raw layout, the cheap layout checks, and datasets built in code."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnseg.dataset import Case, DatasetSpec, RawDataset
from nnseg.dataset._case import image_file_name, label_file_name, parse_image_file_name
from nnseg.dataset._raw import DatasetLayoutError, UnknownCaseError
from nnseg.errors import DatasetError

SPEC = DatasetSpec(
    channel_names=("T1", "T2"), labels={"background": 0, "tumour": 1}, num_training=2, file_ending=".nii.gz"
)


def test_from_folder_lists_sorted_cases_with_channels_and_labels(raw: Any) -> None:
    root = raw.build(case_ids=("liver_10", "liver_2", "a_0001"), num_channels=2)
    raw.case("test_1", num_channels=2, split="Ts", with_label=True)
    raw.case("test_0", num_channels=2, split="Ts", with_label=False)
    ds = RawDataset.from_folder(root)
    assert ds.case_ids == ("a_0001", "liver_10", "liver_2")
    assert ds.root == root
    assert len(ds) == 3
    assert [c.case_id for c in ds] == list(ds.case_ids)
    case = ds["a_0001"]
    assert case.image_paths == (root / "imagesTr/a_0001_0000.nii.gz", root / "imagesTr/a_0001_0001.nii.gz")
    assert case.label_path == root / "labelsTr/a_0001.nii.gz"
    assert ds.test_case_ids == ("test_0", "test_1")
    assert ds.test_cases[0].label_path is None
    assert ds.test_cases[1].label_path == root / "labelsTs/test_1.nii.gz"
    assert "liver_2" in ds
    assert "test_0" not in ds
    assert ds.spec.channel_names == ("ch0", "ch1")
    assert ds.layout_warnings == ()


def test_unknown_case_id_suggests_close_ids(raw: Any) -> None:
    ds = RawDataset.from_folder(raw.build(case_ids=("case_001", "case_002", "other")))
    with pytest.raises(
        UnknownCaseError,
        match=r"no training case 'case_01' in the dataset of .* \(3 cases, "
        r"'case_001', 'case_002', 'other'\)\. Did you mean 'case_001', 'case_002'\?",
    ):
        ds["case_01"]
    with pytest.raises(KeyError):
        ds["zzz"]
    with pytest.raises(DatasetError):
        ds["zzz"]


def test_unknown_case_id_that_is_a_test_case_says_so(raw: Any) -> None:
    root = raw.build()
    raw.case("held_out", split="Ts", with_label=False)
    with pytest.raises(UnknownCaseError, match="It is a test case; find it in dataset.test_cases"):
        RawDataset.from_folder(root)["held_out"]


def test_missing_dataset_json(raw: Any) -> None:
    raw.case("case_a")
    with pytest.raises(
        DatasetLayoutError,
        match=r"dataset\.json does not exist; every nnU-Net raw dataset folder "
        r"needs a dataset\.json",
    ):
        RawDataset.from_folder(raw.root)


def test_missing_folder() -> None:
    with pytest.raises(DatasetError, match="/no/such/raw does not exist; expected an nnU-Net raw dataset folder"):
        RawDataset.from_folder("/no/such/raw")


@pytest.mark.parametrize("key", ["numTraining", "file_ending", "labels", "channel_names"])
def test_missing_required_key(raw: Any, key: str) -> None:
    raw.build()
    raw.write_json(3, **{key: None})
    with pytest.raises(DatasetLayoutError, match=rf"missing required key\(s\) '{key}'"):
        RawDataset.from_folder(raw.root)


def test_label_value_that_is_neither_int_nor_region(raw: Any) -> None:
    raw.build()
    raw.write_json(3, labels={"background": 0, "organ": "1"})
    with pytest.raises(
        DatasetLayoutError,
        match=r"label 'organ' has value '1'; expected an int \(e\.g\. 1\) or a "
        r"non-empty list of ints for a region",
    ):
        RawDataset.from_folder(raw.root)


def test_missing_images_tr(raw: Any) -> None:
    raw.write_json(1)
    raw.label("case_a")
    with pytest.raises(
        DatasetLayoutError,
        match=r"imagesTr/ is missing from .*; expected a folder of training images "
        r"named <case>_<XXXX>\.nii\.gz",
    ):
        RawDataset.from_folder(raw.root)


def test_case_with_fewer_channel_files_than_declared(raw: Any) -> None:
    root = raw.build(num_channels=2)
    (root / "imagesTr/case_b_0001.nii.gz").unlink()
    with pytest.raises(
        DatasetLayoutError,
        match=r"case 'case_b': found 1 of 2 channel file\(s\) in imagesTr/ "
        r"\['case_b_0000\.nii\.gz'\]; expected \['case_b_0000\.nii\.gz', 'case_b_0001\.nii\.gz'\]\. "
        r"Add the missing \['case_b_0001\.nii\.gz'\]",
    ):
        RawDataset.from_folder(root)


def test_channel_index_beyond_the_declared_channels(raw: Any) -> None:
    root = raw.build()
    raw.image("case_a", 1)
    with pytest.raises(
        DatasetLayoutError,
        match=r"case 'case_a', imagesTr/case_a_0001\.nii\.gz: channel index 0001 "
        r"is beyond the 1 channel\(s\) dataset\.json declares \['ch0'\]",
    ):
        RawDataset.from_folder(root)


def test_label_without_images_and_images_without_label(raw: Any) -> None:
    root = raw.build()
    raw.label("orphan")
    (root / "labelsTr/case_b.nii.gz").unlink()
    with pytest.raises(DatasetLayoutError) as info:
        RawDataset.from_folder(root)
    message = str(info.value)
    assert (
        "case 'orphan', labelsTr/orphan.nii.gz: label file without image files; expected "
        "imagesTr/orphan_0000.nii.gz. Add the images or remove the label file." in message
    )
    assert (
        "case 'case_b': image file(s) ['case_b_0000.nii.gz'] in imagesTr/ have no label file; expected "
        "labelsTr/case_b.nii.gz." in message
    )


def test_num_training_disagreeing(raw: Any) -> None:
    root = raw.build()
    raw.write_json(5)
    with pytest.raises(
        DatasetLayoutError,
        match=r"dataset\.json: numTraining is 5 but imagesTr/ holds 3 case\(s\); "
        r"expected them to agree\. Set numTraining to 3",
    ):
        RawDataset.from_folder(root)


def test_empty_images_tr(raw: Any) -> None:
    raw.write_json(0)
    (raw.root / "imagesTr").mkdir()
    (raw.root / "labelsTr").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"imagesTr/ holds no image files ending in '\.nii\.gz'"):
        RawDataset.from_folder(raw.root)


def test_file_with_another_image_ending_is_an_error(raw: Any) -> None:
    root = raw.build()
    (root / "imagesTr/case_d_0000.nrrd").write_bytes(b"x")
    with pytest.raises(
        DatasetLayoutError,
        match=r"imagesTr/case_d_0000\.nrrd: file ending differs from file_ending "
        r"'\.nii\.gz' in dataset\.json",
    ):
        RawDataset.from_folder(root)


def test_misnamed_image_file_is_an_error(raw: Any) -> None:
    root = raw.build()
    (root / "imagesTr/case_d.nii.gz").write_bytes(b"x")
    with pytest.raises(
        DatasetLayoutError,
        match=r"imagesTr/case_d\.nii\.gz: file name does not follow the image naming "
        r"rule <case>_<XXXX>\.nii\.gz \(XXXX: 4-digit channel index\); expected e\.g\. "
        r"case_d_0000\.nii\.gz",
    ):
        RawDataset.from_folder(root)


def test_unsupported_file_ending(raw: Any) -> None:
    raw.build()
    raw.write_json(3, file_ending=".gif")
    with pytest.raises(
        DatasetLayoutError,
        match=r"file_ending '\.gif' is not supported; expected one of \.nii\.gz, "
        r"\.nii, \.nrrd, \.mha",
    ):
        RawDataset.from_folder(raw.root)


def test_other_files_only_warn_and_hidden_files_are_skipped(raw: Any) -> None:
    root = raw.build()
    (root / "imagesTr/README.txt").write_text("notes")
    (root / "imagesTr/.case_x_0000.123.tmp.nii.gz").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"imagesTr/README\.txt: ignored, not a '\.nii\.gz' file\."):
        ds = RawDataset.from_folder(root)
    assert len(ds) == 3
    assert [p.severity for p in ds.layout_warnings] == ["warning"]


def test_all_layout_problems_are_listed_in_one_error(raw: Any) -> None:
    root = raw.build(num_channels=2)
    (root / "imagesTr/case_a_0001.nii.gz").unlink()
    (root / "labelsTr/case_c.nii.gz").unlink()
    raw.write_json(7, num_channels=2)
    with pytest.raises(DatasetLayoutError, match=r"has 3 layout problem\(s\)") as info:
        RawDataset.from_folder(root)
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 3
    assert any("case 'case_a': found 1 of 2" in m for m in messages)
    assert any("case 'case_c': image file(s)" in m for m in messages)
    assert any("numTraining is 7" in m for m in messages)
    assert all(m in str(info.value) for m in messages)


def test_overlapping_training_and_test_ids_warn(raw: Any) -> None:
    root = raw.build()
    raw.case("case_a", split="Ts", with_label=False)
    with pytest.warns(UserWarning, match=r"case id\(s\) \['case_a'\] appear among both the training and the test"):
        RawDataset.from_folder(root)


def test_dataset_key_lists_files_explicitly(raw: Any) -> None:
    raw.image("x", folder="somewhere")
    raw.label("x", folder="segs")
    raw.write_json(
        1,
        dataset={"x": {"images": ["somewhere/x_0000.nii.gz"], "label": "segs/x.nii.gz"}},
        overwrite_image_reader_writer="NibabelIO",
    )
    with pytest.warns(UserWarning, match="overwrite_image_reader_writer is 'NibabelIO'; nnseg reads every file"):
        ds = RawDataset.from_folder(raw.root)
    assert ds.case_ids == ("x",)
    assert ds["x"].label_path == raw.root / "segs/x.nii.gz"


def test_dataset_key_rejects_environment_variables_and_missing_files(raw: Any) -> None:
    raw.write_json(
        2,
        dataset={
            "x": {"images": ["$DATA/x_0000.nii.gz"], "label": "x.nii.gz"},
            "y": {"images": ["y_0000.nii.gz"], "label": "y.nii.gz"},
        },
    )
    with pytest.raises(DatasetLayoutError) as info:
        RawDataset.from_folder(raw.root)
    message = str(info.value)
    assert "case 'x': path '$DATA/x_0000.nii.gz' in dataset.json 'dataset' uses an environment variable" in message
    assert "case 'y', y_0000.nii.gz: listed in dataset.json 'dataset' but does not exist" in message


def test_dataset_key_with_bad_entries_lists_each(raw: Any) -> None:
    raw.image("x", folder="imgs")
    raw.label("x", folder="segs")
    raw.write_json(
        3,
        dataset={
            "x": {"images": ["imgs/x_0000.nii.gz", "imgs/x_0000.nii.gz"], "label": "segs/x.nii.gz"},
            "y": {"image": "y.nii.gz"},
        },
    )
    with pytest.raises(DatasetLayoutError) as info:
        RawDataset.from_folder(raw.root)
    assert [p.message for p in info.value.problems] == [
        "case 'x': dataset.json 'dataset' lists 2 image file(s) ['imgs/x_0000.nii.gz', 'imgs/x_0000.nii.gz']; expected "
        "one per channel: 1 channel(s) ['ch0'].",
        "case 'y': dataset.json 'dataset' entry is {'image': 'y.nii.gz'}; expected {\"images\": [one path per channel], "
        '"label": path}.',
        "dataset.json: numTraining is 3 but the 'dataset' key lists 2 case(s); expected them to agree. Set numTraining "
        "to 2 or add the missing cases.",
    ]


def test_sub_folders_and_test_labels_without_images_warn(raw: Any) -> None:
    root = raw.build()
    (root / "imagesTr/old").mkdir()
    raw.case("t1", split="Ts")
    raw.label("t2", folder="labelsTs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = RawDataset.from_folder(root)
    assert (
        [str(w.message) for w in caught]
        == [p.message for p in ds.layout_warnings]
        == [
            "imagesTr/old/: sub-folder ignored; expected the files directly in imagesTr/.",
            "case 't2', labelsTs/t2.nii.gz: test label file without images; expected imagesTs/t2_0000.nii.gz. It is "
            "ignored.",
        ]
    )
    assert ds.test_case_ids == ("t1",)


def test_from_cases_resolves_paths_against_root_and_sorts() -> None:
    cases = [
        Case("b", ("b_t1.nii.gz", "b_t2.nii.gz"), "b_seg.nii.gz"),
        Case("a", ("a_t1.nii.gz", "a_t2.nii.gz"), "a_seg.nii.gz"),
    ]
    ds = RawDataset.from_cases(SPEC, cases, root="/data")
    assert ds.case_ids == ("a", "b")
    assert ds.root == Path("/data")
    assert ds["a"].image_paths == (Path("/data/a_t1.nii.gz"), Path("/data/a_t2.nii.gz"))
    assert ds["b"].label_path == Path("/data/b_seg.nii.gz")


def test_from_cases_lists_every_bad_case() -> None:
    cases = [Case("a", ("a_t1.nii.gz",), "a.nii.gz"), Case("b", ("b1", "b2")), Case("b", ("b1", "b2"), "b.nii.gz")]
    with pytest.raises(DatasetError, match=r"\(3 problem\(s\)\)") as info:
        RawDataset.from_cases(SPEC, cases)
    message = str(info.value)
    assert (
        "training case 'a' has 1 image file(s) (a_t1.nii.gz) but the spec declares 2 channel(s) ['T1', 'T2']" in message
    )
    assert "training case id 'b' appears more than once" in message
    assert "training case 'b' has no label_path" in message


def test_from_cases_checks_num_training() -> None:
    with pytest.raises(
        DatasetError,
        match=r"spec\.num_training \(numTraining\) is 2 but there are 1 training cases; "
        r"expected them to agree\. Use dataclasses\.replace\(spec, num_training=1\)",
    ):
        RawDataset.from_cases(SPEC, [Case("a", ("1", "2"), "a")])


def test_from_cases_rejects_non_cases_and_empty_ids() -> None:
    with pytest.raises(DatasetError, match=r"expected Case objects; got str"):
        RawDataset.from_cases(SPEC, ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(DatasetError, match="case_id must be a non-empty string"):
        Case("", ("x",))
    with pytest.raises(DatasetError, match=r"image_paths must be a sequence of paths .* Wrap it in a tuple"):
        Case("a", "a_0000.nii.gz")  # type: ignore[arg-type]


def test_constructor_reads_no_file() -> None:
    ds = RawDataset.from_cases(SPEC, [Case("a", ("/nope/1", "/nope/2"), "/nope/a"), Case("b", ("3", "4"), "b")])
    assert len(ds) == 2
    assert ds.test_cases == ()


_case_ids = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(case_id=_case_ids, channel=st.integers(0, 9999), ending=st.sampled_from([".nii.gz", ".nii", ".nrrd", ".mha"]))
def test_image_file_names_parse_back(case_id: str, channel: int, ending: str) -> None:
    assert parse_image_file_name(image_file_name(case_id, channel, ending), ending) == (case_id, channel)
    # a label file name parses only when the case id itself ends in _XXXX, and then it names the same file
    parsed = parse_image_file_name(label_file_name(case_id, ending), ending)
    if parsed is not None:
        assert image_file_name(*parsed, ending) == label_file_name(case_id, ending)


@pytest.mark.parametrize("name", ["_0000.nii.gz", "a_000.nii.gz", "a_00001.nii", "a_0000.nii", "a-0000.nii.gz"])
def test_names_that_break_the_rule_do_not_parse(name: str) -> None:
    assert parse_image_file_name(name, ".nii.gz") is None


@pytest.mark.parity
def test_case_ids_match_nnunetv2(raw: Any) -> None:
    utils = pytest.importorskip("nnunetv2.utilities.utils")
    root = raw.build(case_ids=("b_0001", "a", "liver_7", "liver_10"), num_channels=2)
    expected = utils.get_identifiers_from_splitted_dataset_folder(str(root / "imagesTr"), ".nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(RawDataset.from_folder(root).case_ids) == list(expected)
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 4
