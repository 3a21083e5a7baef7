"""The full integrity check: every problem of every case, at once, with a pinned message each."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from nnseg.cli.main import main
from nnseg.dataset import Problem, RawDataset, VerificationReport, verify_folder
from nnseg.errors import ConfigError, DatasetError
from nnseg.io import ImageGeometry


def _messages(report: VerificationReport, severity: str = "error") -> list[str]:
    return [p.message for p in report.problems if p.severity == severity]


def _only(report: VerificationReport, severity: str = "error") -> str:
    messages = _messages(report, severity)
    assert len(messages) == 1, report.format()
    return messages[0]


def test_clean_dataset_has_no_problems(raw: Any) -> None:
    raw.build(num_channels=2)
    report = RawDataset.from_folder(raw.root).verify()
    assert report.ok
    assert report.problems == ()
    assert report.num_cases == 3
    assert report.format() == f"0 errors and 0 warnings in 3 checked cases of {raw.root}."
    report.raise_for_errors()


def test_shapes_differ_between_channels(raw: Any) -> None:
    raw.build(num_channels=2)
    raw.image("case_b", 1, raw.image_array(shape=(4, 5, 7)))
    report = RawDataset.from_folder(raw.root).verify()
    assert _only(report) == (
        "case 'case_b', imagesTr/case_b_0001.nii.gz: shape (z, y, x) is (4, 5, 7) but imagesTr/case_b_0000.nii.gz has "
        "(4, 5, 6); expected every channel and the label of a case to have the same shape."
    )
    assert report.errors[0].case_id == "case_b"
    assert report.errors[0].path == raw.root / "imagesTr/case_b_0001.nii.gz"


def test_shapes_differ_between_image_and_label(raw: Any) -> None:
    raw.build()
    raw.label("case_a", raw.label_array(shape=(3, 5, 6)))
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        "case 'case_a', labelsTr/case_a.nii.gz: shape (z, y, x) is (3, 5, 6) but imagesTr/case_a_0000.nii.gz has "
        "(4, 5, 6); expected every channel and the label of a case to have the same shape."
    )


def test_spacings_differ_beyond_tolerance(raw: Any) -> None:
    raw.build()
    raw.label("case_c", geometry=ImageGeometry.identity((2.0, 1.0, 0.75)))
    raw.label("case_a", geometry=ImageGeometry.identity((2.0, 1.0, 0.5 * (1 + 1e-7))))  # within tolerance
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        "case 'case_c', labelsTr/case_c.nii.gz: spacing (z, y, x) is (2, 1, 0.75) mm but imagesTr/case_c_0000.nii.gz "
        "has (2, 1, 0.5) mm (relative tolerance 1e-05); expected every channel and the label of a case to share one "
        "spacing."
    )


def test_undeclared_label_values_are_listed(raw: Any) -> None:
    raw.build()
    raw.label("case_b", raw.label_array(values=(0, 1, 7, 3)))
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        "case 'case_b', labelsTr/case_b.nii.gz: holds label value(s) [3, 7] that dataset.json does not declare; "
        "expected only [0, 1, 2]. Fix the label map or add the labels to 'labels' in dataset.json."
    )


def test_non_integer_label_values(raw: Any) -> None:
    raw.build()
    path = raw.root / "labelsTr/case_a.nii.gz"
    array = raw.label_array().astype(np.float32)
    array[0, 0, :2] = [0.5, 1.25]
    raw.image("case_a", 0, array, folder="labelsTr")  # write_image keeps float32
    (raw.root / "labelsTr/case_a_0000.nii.gz").replace(path)
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        "case 'case_a', labelsTr/case_a.nii.gz: holds 2 non-integer label value(s) (dtype float32), e.g. [0.5, 1.25]; "
        "expected integer labels. Round the label map or re-export it as an integer image."
    )


@pytest.mark.parametrize("ending", [".mha", ".nii.gz", ".nii"])
def test_nan_and_infinite_intensities(make_raw: Any, ending: str) -> None:
    raw = make_raw(ending=ending)  # ITK's NIfTI reader turns NaN and inf into 0: NIfTI is checked on its bytes
    raw.build()
    array = raw.image_array()
    array[0, 0, :3] = [np.nan, np.inf, -np.inf]
    raw.image("case_c", 0, array)
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        f"case 'case_c': image file imagesTr/case_c_0000{ending} holds 1 NaN and 2 infinite value(s); expected "
        "finite intensities. Replace them in the file, e.g. with the image minimum."
    )


def test_zero_byte_and_unreadable_files(raw: Any) -> None:
    root = raw.build(num_channels=2)
    (root / "imagesTr/case_a_0001.nii.gz").write_bytes(b"")
    (root / "labelsTr/case_b.nii.gz").write_bytes(b"this is not an image" * 10)
    report = RawDataset.from_folder(root).verify()
    assert _messages(report) == [
        "case 'case_a': image file imagesTr/case_a_0001.nii.gz is empty (0 bytes); expected an image. Re-export or "
        "re-copy the file.",
        "case 'case_b': cannot read image file labelsTr/case_b.nii.gz: SimpleITK failed (sitk::ERROR: Unable to "
        'determine ImageIO reader for "labelsTr/case_b.nii.gz"). Check that the file is complete and not corrupt.',
    ]


def test_4d_file_where_3d_expected(raw: Any) -> None:
    root = raw.build()
    image = sitk.GetImageFromArray(np.zeros((2, *raw.shape), np.float32), isVector=False)
    sitk.WriteImage(image, str(root / "imagesTr/case_b_0000.nii.gz"))
    assert _only(RawDataset.from_folder(root).verify()) == (
        "case 'case_b': image file imagesTr/case_b_0000.nii.gz is 4D (size (6, 5, 4, 2)); expected a 3D (or 2D) image. "
        "nnseg reads one 3D file per image channel (<case>_0000, <case>_0001, ...) and one per label map; split the "
        "file into 3D files."
    )


def test_multi_component_file(raw: Any) -> None:
    root = raw.build()
    rgb = sitk.GetImageFromArray(np.zeros((*raw.shape, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(root / "imagesTr/case_a_0000.nii.gz"))
    assert _only(RawDataset.from_folder(root).verify()) == (
        "case 'case_a': image file imagesTr/case_a_0000.nii.gz has 3 components per pixel; expected a scalar image "
        "(one file per channel, named <case>_0000, <case>_0001, ...)."
    )


def test_origin_and_direction_differences_only_warn(raw: Any) -> None:
    raw.build(num_channels=2)
    moved = dataclasses.replace(raw.geometry, itk_origin=(0.0, 3.0, 0.0))
    turned = dataclasses.replace(raw.geometry, itk_direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    raw.image("case_a", 1, geometry=moved)
    raw.label("case_c", geometry=turned)
    report = RawDataset.from_folder(raw.root).verify()
    assert report.ok
    assert len(report.warnings) == 2
    assert _messages(report, "warning") == [
        "case 'case_a', imagesTr/case_a_0001.nii.gz: origin (x, y, z) is (0, 3, 0) mm but imagesTr/case_a_0000.nii.gz "
        "has (0, 0, 0) mm; expected the same origin (tolerance 0.0001 mm). Check that the files belong together; nnseg "
        "uses the first channel's geometry.",
        "case 'case_c', labelsTr/case_c.nii.gz: direction (0, 1, 0, 1, 0, 0, 0, 0, 1) differs from "
        "imagesTr/case_c_0000.nii.gz's (1, 0, 0, 0, 1, 0, 0, 0, 1); expected the same direction cosines (tolerance "
        "1e-05). Check that the files belong together; nnseg uses the first channel's geometry.",
    ]
    report.raise_for_errors()


def test_2d_image_in_a_3d_case(raw: Any) -> None:
    raw.build()
    raw.label("case_a", raw.label_array(shape=(1, 5, 6)), geometry=ImageGeometry.identity((1.0, 0.5)))
    assert _only(RawDataset.from_folder(raw.root).verify()) == (
        "case 'case_a', labelsTr/case_a.nii.gz: is a 2D image but imagesTr/case_a_0000.nii.gz is 3D; expected every "
        "file of a case to have the same number of dimensions."
    )


def test_2d_dataset_verifies(make_raw: Any) -> None:
    raw2d = make_raw("Dataset003_Flat", ".mha")
    raw2d.write_json(2)
    for case_id in ("p", "q"):
        raw2d.image(case_id, 0, raw2d.image_array(shape=(1, 5, 6)), geometry=ImageGeometry.identity((0.5, 0.5)))
        raw2d.label(case_id, raw2d.label_array(shape=(1, 5, 6)), geometry=ImageGeometry.identity((0.5, 0.5)))
    assert RawDataset.from_folder(raw2d.root).verify().problems == ()


def _break_several_cases(make_raw: Any) -> Any:
    raw = make_raw(ending=".nrrd")
    root = raw.build(case_ids=("c1", "c2", "c3", "c4", "c5"), num_channels=2)
    raw.image("c1", 1, raw.image_array(shape=(4, 5, 7)))
    raw.label("c2", raw.label_array(values=(0, 5)))
    nan_image = raw.image_array()
    nan_image[1, 1, 1] = np.nan
    raw.image("c4", 0, nan_image)
    (root / "labelsTr/c4.nrrd").write_bytes(b"")
    raw.image("c5", 1, geometry=dataclasses.replace(raw.geometry, itk_origin=(1.0, 0.0, 0.0)))
    raw.case("t9", num_channels=1, split="Ts", with_label=False)
    raw.image("t9", 1, raw.image_array(shape=(2, 2, 2)), folder="imagesTs")
    return raw


def test_verify_lists_every_problem_of_every_case(make_raw: Any) -> None:
    raw = _break_several_cases(make_raw)
    report = RawDataset.from_folder(raw.root).verify()
    assert [(p.case_id, p.severity) for p in report.problems] == [
        ("c1", "error"),
        ("c2", "error"),
        ("c4", "error"),
        ("c4", "error"),
        ("c5", "warning"),
        ("t9", "error"),
    ]
    assert "ERROR: case 'c4': image file imagesTr/c4_0000.nrrd holds 1 NaN" in report.format()
    assert "ERROR: case 'c4': image file labelsTr/c4.nrrd is empty (0 bytes)" in report.format()
    assert report.summary() == (
        f"5 errors and 1 warning in 6 checked cases of {raw.root}; cases with errors: 'c1', 'c2', 'c4', 't9'."
    )
    with pytest.raises(DatasetError, match=r"the dataset has 5 errors:\n  - case 'c1', ") as info:
        report.raise_for_errors()
    assert all(p.message in str(info.value) for p in report.errors)


def test_report_does_not_depend_on_the_number_of_workers(make_raw: Any) -> None:
    dataset = RawDataset.from_folder(_break_several_cases(make_raw).root)
    assert dataset.verify(num_workers=2) == dataset.verify(num_workers=1)


def test_layout_warnings_open_the_report(raw: Any) -> None:
    raw.build()
    (raw.root / "labelsTr/notes.md").write_text("x")
    with pytest.warns(UserWarning, match="notes.md"):
        dataset = RawDataset.from_folder(raw.root)
    assert _only(dataset.verify(), "warning") == "labelsTr/notes.md: ignored, not a '.nii.gz' file."


def test_report_json_round_trip(tmp_path: Path, make_raw: Any) -> None:
    report = RawDataset.from_folder(_break_several_cases(make_raw).root).verify()
    report.save(tmp_path / "report.json")
    assert VerificationReport.load(tmp_path / "report.json") == report
    with pytest.raises(DatasetError, match="verification report has schema_version 0; expected 1"):
        VerificationReport.from_json({**report.to_json(), "schema_version": 0})


def test_bad_arguments(raw: Any) -> None:
    with pytest.raises(ConfigError, match=r"Problem: severity must be one of 'error', 'warning'; got 'fatal'"):
        Problem("a", None, "fatal", "x")  # type: ignore[arg-type]
    with pytest.raises(
        ConfigError, match=r"verify: num_workers must be an integer >= 0; got -1\. Set num_workers=0 or more"
    ):
        RawDataset.from_folder(raw.build()).verify(num_workers=-1)


def test_cli_lists_every_problem_and_exits_2(make_raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    raw = _break_several_cases(make_raw)
    report = RawDataset.from_folder(raw.root).verify()
    assert main(["verify", str(raw.root), "--num-workers", "1"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out == [p.format() for p in report.problems] + [report.summary()]
    assert out[0].startswith("ERROR: case 'c1', imagesTr/c1_0001.nrrd: shape (z, y, x) is (4, 5, 7)")
    assert out[4].startswith("WARNING: case 'c5', imagesTr/c5_0001.nrrd: origin")
    assert out[5].startswith("ERROR: case 't9', imagesTs/t9_0001.nrrd: shape (z, y, x) is (2, 2, 2)")


def test_cli_exits_0_with_warnings_only(raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    raw.build()
    raw.label("case_a", geometry=dataclasses.replace(raw.geometry, itk_origin=(9.0, 0.0, 0.0)))
    assert main(["verify", str(raw.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: case 'case_a', labelsTr/case_a.nii.gz: origin (x, y, z) is (9, 0, 0) mm")
    assert out.endswith(f"0 errors and 1 warning in 3 checked cases of {raw.root}.\n")


def test_cli_lists_layout_and_file_problems_in_one_run(raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root = raw.build(num_channels=2)
    (root / "imagesTr/case_a_0000.nii.gz").unlink()
    (root / "imagesTr/extra.txt").write_text("x")
    raw.write_json(4, num_channels=2)
    raw.label("case_a", raw.label_array(values=(0, 9)))  # found only by reading the files
    raw.image("case_c", 1, raw.image_array(shape=(4, 5, 7)))
    assert main(["verify", str(root)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "WARNING: imagesTr/extra.txt: ignored, not a '.nii.gz' file.",
        "ERROR: case 'case_a': found 1 of 2 channel file(s) in imagesTr/ ['case_a_0001.nii.gz']; expected "
        "['case_a_0000.nii.gz', 'case_a_0001.nii.gz']. Add the missing ['case_a_0000.nii.gz'], or fix 'channel_names' "
        "in dataset.json.",
        "ERROR: dataset.json: numTraining is 4 but imagesTr/ holds 3 case(s); expected them to agree. Set numTraining "
        "to 3 or add the missing cases.",
        "ERROR: case 'case_a', labelsTr/case_a.nii.gz: holds label value(s) [9] that dataset.json does not declare; "
        "expected only [0, 1, 2]. Fix the label map or add the labels to 'labels' in dataset.json.",
        "ERROR: case 'case_c', imagesTr/case_c_0001.nii.gz: shape (z, y, x) is (4, 5, 7) but "
        "imagesTr/case_c_0000.nii.gz has (4, 5, 6); expected every channel and the label of a case to have the same "
        "shape.",
        f"4 errors and 1 warning in 3 checked cases of {root}; cases with errors: 'case_a', 'case_c'.",
    ]


def test_cli_without_dataset_json_lists_the_layout_problems(raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    root = raw.build()
    (root / "dataset.json").unlink()
    (root / "imagesTr/case_a_0000.nii.gz").write_bytes(b"")  # cannot be checked without dataset.json
    assert main(["verify", str(root)]) == 2
    assert capsys.readouterr().out.splitlines() == [
        f"ERROR: {root}/dataset.json does not exist; every nnU-Net raw dataset folder needs a dataset.json with "
        "'channel_names', 'labels', 'numTraining' and 'file_ending'.",
        f"1 error and 0 warnings in 0 checked cases of {root}.",
    ]


def test_cli_bad_worker_count_is_one_line_and_exit_2(raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(raw.build()), "--num-workers", "-3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "nnseg verify: error: ConfigError: verify: num_workers must be an integer >= 0; got -3. Set num_workers=0 or more."
    )


def test_verify_folder_equals_open_then_verify_on_a_valid_layout(make_raw: Any) -> None:
    raw = _break_several_cases(make_raw)
    (raw.root / "labelsTr/readme.txt").write_text("x")
    with pytest.warns(UserWarning, match="readme.txt"):
        expected = RawDataset.from_folder(raw.root).verify()
    assert verify_folder(raw.root, num_workers=2) == expected
    assert verify_folder(raw.root, num_workers=1) == expected


def test_verify_folder_reads_the_cases_a_broken_layout_still_names(raw: Any) -> None:
    root = raw.build(case_ids=("case_a", "case_b", "case_c", "case_d"))
    raw.label("orphan")  # layout error: label without images
    (root / "labelsTr/case_b.nii.gz").unlink()  # layout error: images without label
    raw.label("case_c", raw.label_array(shape=(3, 5, 6)))  # file error, found although the layout is broken
    report = verify_folder(root)
    assert report.num_cases == 3  # case_a, case_c, case_d are read; case_b cannot be
    assert [(p.case_id, p.severity) for p in report.problems] == [
        ("orphan", "error"),
        ("case_b", "error"),
        ("case_c", "error"),
    ]
    assert report.problems[2].message.startswith("case 'case_c', labelsTr/case_c.nii.gz: shape (z, y, x) is (3, 5, 6)")
    with pytest.raises(DatasetError, match="the dataset has 3 errors"):
        report.raise_for_errors()
