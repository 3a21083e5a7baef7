"""The synthetic dataset generator: layout, determinism, geometry, intensity models, labels, errors, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.cli.main import main
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.io import read_image, read_images, read_segmentation
from nnseg.testing import make_synthetic_case, make_synthetic_dataset


def _cases(folder: Path, split: str = "Tr") -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in (folder / f"labels{split}").glob("*.nii.gz"))


def _load(folder: Path, case_id: str, split: str = "Tr", num_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    ending = ".nii.gz"
    image, _ = read_images([folder / f"images{split}" / f"{case_id}_{c:04d}{ending}" for c in range(num_channels)])
    label, _ = read_segmentation(folder / f"labels{split}" / f"{case_id}{ending}")
    return image, label


def _digest(folder: Path) -> str:
    """Hash of dataset.json and of every array read back (file bytes may carry compression details)."""
    digest = hashlib.sha256((folder / "dataset.json").read_bytes())
    for path in sorted(folder.glob("*s/*.nii.gz")):
        array, geometry = read_image(path)
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(str((array.dtype, array.shape, geometry.to_json())).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _nonzero_relative_size(image: np.ndarray) -> float:
    coords = np.argwhere((image != 0).any(axis=0))
    extent = coords.max(axis=0) - coords.min(axis=0) + 1
    return float(np.prod(extent) / np.prod(image.shape[1:]))


# ------------------------------------------------------------------------------------------ layout
def test_default_dataset_has_the_nnunet_raw_layout(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=3, num_test_cases=2)
    assert folder == tmp_path / "Dataset001_Synthetic"
    spec = DatasetSpec.load(folder / "dataset.json")
    assert spec.channel_names == ("CT",)
    assert dict(spec.labels) == {"background": 0, "organ": 1, "lesion": 2}
    assert spec.num_training == 3
    assert spec.file_ending == ".nii.gz"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"case_00{i}_0000.nii.gz" for i in range(3)]
    assert _cases(folder) == ["case_000", "case_001", "case_002"]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["case_003_0000.nii.gz", "case_004_0000.nii.gz"]
    assert _cases(folder, "Ts") == ["case_003", "case_004"]


def test_no_test_folders_without_test_cases(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=1)
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "imagesTr", "labelsTr"]


def test_raw_dataset_loads_and_verifies(tmp_path: Path) -> None:
    dataset_module = pytest.importorskip("nnseg.dataset._raw")
    folder = make_synthetic_dataset(tmp_path, num_cases=3, num_test_cases=1, modality="mr", num_channels=2)
    dataset = dataset_module.RawDataset.from_folder(folder)
    assert dataset.case_ids == ("case_000", "case_001", "case_002")
    assert [c.case_id for c in dataset.test_cases] == ["case_003"]
    report = dataset.verify()
    report.raise_for_errors()
    assert getattr(report, "ok", True)


# ------------------------------------------------------------------------------------------ determinism
def test_same_arguments_give_identical_data(tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"num_cases": 3, "num_test_cases": 1, "modality": "mr", "num_channels": 2, "seed": 7}
    first = make_synthetic_dataset(tmp_path / "a", **kwargs)
    second = make_synthetic_dataset(tmp_path / "b", **kwargs)
    assert _digest(first) == _digest(second)
    assert (first / "dataset.json").read_bytes() == (second / "dataset.json").read_bytes()


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    first = make_synthetic_dataset(tmp_path / "a", num_cases=2, seed=0)
    second = make_synthetic_dataset(tmp_path / "b", num_cases=2, seed=1)
    assert _digest(first) != _digest(second)
    assert not np.array_equal(_load(first, "case_000")[1], _load(second, "case_000")[1])


def test_dataset_case_is_make_synthetic_case_with_seed_pair(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=2, modality="mr", num_channels=2, num_classes=4, seed=3)
    image, label = _load(folder, "case_001", num_channels=2)
    expected_image, expected_label = make_synthetic_case(
        image.shape[1:], modality="mr", num_channels=2, num_classes=4, seed=(3, 1)
    )
    np.testing.assert_array_equal(image, expected_image)
    np.testing.assert_array_equal(label, expected_label)


# ------------------------------------------------------------------------------------------ geometry
def test_shapes_vary_per_case_around_the_requested_shape(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=8, shape=(32, 48, 48))
    shapes = [_load(folder, case_id)[0].shape[1:] for case_id in _cases(folder)]
    assert len(set(shapes)) == len(shapes)
    for axis, requested in enumerate((32, 48, 48)):
        sizes = [shape[axis] for shape in shapes]
        assert len(set(sizes)) > 1
        assert all(0.84 * requested <= n <= 1.16 * requested for n in sizes)


@pytest.mark.parametrize(
    ("spacing", "ending"),
    [((1.0, 1.0, 1.0), ".nii.gz"), ((5.0, 1.0, 1.0), ".nii.gz"), ((2.5, 0.8, 0.7), ".nrrd")],
)
def test_spacing_and_geometry_round_trip(tmp_path: Path, spacing: tuple[float, ...], ending: str) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=2, shape=(10, 40, 40), spacing=spacing, file_ending=ending)
    for case_id in ("case_000", "case_001"):
        image, geometry = read_image(folder / "imagesTr" / f"{case_id}_0000{ending}")
        label, label_geometry = read_segmentation(folder / "labelsTr" / f"{case_id}{ending}")
        assert geometry.spacing == spacing  # exact: these values are exact in NIfTI's float32 and in NRRD
        assert label_geometry == geometry
        assert label.shape[1:] == image.shape
        assert any(o != 0.0 for o in geometry.itk_origin)
        assert geometry.itk_direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_spacing_jitter_varies_spacing_deterministically(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(
        tmp_path, num_cases=4, spacing=(3.0, 1.0, 1.0), spacing_jitter=0.1, file_ending=".nrrd"
    )
    spacings = [read_image(folder / "imagesTr" / f"case_00{i}_0000.nrrd")[1].spacing for i in range(4)]
    assert len(set(spacings)) == 4
    assert all(abs(s[0] - 3.0) <= 0.3 and abs(s[1] - 1.0) <= 0.1 for s in spacings)


# ------------------------------------------------------------------------------------------ intensities
def test_ct_has_no_exact_zeros_and_hounsfield_like_values(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=3, num_channels=2)
    assert DatasetSpec.load(folder / "dataset.json").channel_names == ("CT", "CT")
    for case_id in _cases(folder):
        image, label = _load(folder, case_id, num_channels=2)
        assert np.count_nonzero(image == 0) == 0
        assert _nonzero_relative_size(image) == 1.0
        assert -1100 < np.median(image[0][label[0] == 0]) < -900  # mostly air around the body
        assert 90 < np.median(image[0][label[0] == 1]) < 150  # the organ
        assert np.array_equal(image, np.round(image))  # integral HU (stored as int16)


def test_mr_is_exactly_zero_outside_a_body_that_does_not_fill_the_box(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=5, modality="mr", num_channels=2)
    assert DatasetSpec.load(folder / "dataset.json").channel_names == ("T2", "ADC")
    sizes, scales = [], []
    for case_id in _cases(folder):
        image, label = _load(folder, case_id, num_channels=2)
        body = image[0] != 0
        assert np.array_equal(body, image[1] != 0)  # both channels share the body
        assert 0.15 < body.mean() < 0.5
        assert np.all(image >= 0)
        assert np.all(body[label[0] > 0])  # every structure lies inside the body
        sizes.append(_nonzero_relative_size(image))
        scales.append(float(np.median(image[0][body])))
    assert np.median(sizes) < 0.65
    assert max(scales) / min(scales) > 1.5  # arbitrary intensity scale per case


def test_channels_are_correlated_but_different() -> None:
    image, label = make_synthetic_case((24, 40, 40), modality="mr", num_channels=2, num_classes=4, seed=5)
    inside = image[0] != 0
    correlation = np.corrcoef(image[0][inside], image[1][inside])[0, 1]
    assert not np.allclose(image[0], image[1])
    assert abs(correlation) > 0.3


@pytest.mark.parametrize("modality", ["ct", "mr"])
def test_intensity_predicts_the_label(modality: str) -> None:
    """Classifying each voxel by the nearest class mean of its case already gives a high Dice."""
    for seed in range(3):
        image, label = make_synthetic_case(modality=modality, num_channels=2, num_classes=4, seed=seed)
        voxels, truth = image.reshape(2, -1).T, label.ravel()
        outside = voxels[:, 0] < -500 if modality == "ct" else voxels[:, 0] == 0
        voxels = voxels / voxels[~outside].std(axis=0)  # channels on comparable scales
        groups = [outside, (truth == 0) & ~outside, *(truth == k for k in range(1, 4))]
        means = np.stack([voxels[group].mean(axis=0) for group in groups])
        nearest = np.argmin(((voxels[:, None, :] - means[None]) ** 2).sum(axis=-1), axis=1)
        predicted = np.maximum(nearest - 1, 0)
        for k in range(1, 4):
            dice = 2 * np.sum((predicted == k) & (truth == k)) / (np.sum(predicted == k) + np.sum(truth == k))
            assert dice > 0.8, (modality, seed, k, dice)


# ------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("num_classes", [2, 3, 6])
def test_every_class_is_present_in_every_case(tmp_path: Path, num_classes: int) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=4, num_test_cases=2, num_classes=num_classes)
    spec = DatasetSpec.load(folder / "dataset.json")
    assert list(spec.labels.values()) == list(range(num_classes))
    for split in ("Tr", "Ts"):
        for case_id in _cases(folder, split):
            label = _load(folder, case_id, split)[1]
            assert label.dtype == np.uint8
            assert np.array_equal(np.unique(label), np.arange(num_classes))


def test_the_lesion_is_the_one_small_structure() -> None:
    for seed in range(10):
        _, label = make_synthetic_case((32, 48, 48), num_classes=5, seed=seed)
        counts = np.bincount(label.ravel(), minlength=5)
        assert 0 < counts[2] <= 400
        assert counts[2] * 2 < min(counts[1], counts[3], counts[4])


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(8, 20), min_size=2, max_size=3),
    modality=st.sampled_from(["ct", "mr"]),
    num_classes=st.integers(2, 10),
    seed=st.integers(0, 2**31),
)
def test_any_small_case_is_valid(shape: list[int], modality: str, num_classes: int, seed: int) -> None:
    image, label = make_synthetic_case(shape, modality=modality, num_classes=num_classes, seed=seed)
    spatial = tuple(shape) if len(shape) == 3 else (1, *shape)
    assert image.shape == (1, *spatial)
    assert label.shape == (1, *spatial)
    assert np.array_equal(np.unique(label), np.arange(num_classes))
    assert (np.count_nonzero(image == 0) == 0) if modality == "ct" else np.all(image[label > 0] > 0)


# ------------------------------------------------------------------------------------------ 2D
def test_two_d_writes_real_2d_files(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(
        tmp_path, num_cases=2, two_d=True, shape=(1, 64, 56), spacing=(9.0, 0.5, 0.75), modality="mr"
    )
    for case_id in _cases(folder):
        array, geometry = read_image(folder / "imagesTr" / f"{case_id}_0000.nii.gz")
        assert geometry.ndim == 2
        assert geometry.itk_spacing == (0.75, 0.5)
        assert array.shape[0] == 1
        assert 54 <= array.shape[1] <= 74
        assert 47 <= array.shape[2] <= 65
        label, label_geometry = read_segmentation(folder / "labelsTr" / f"{case_id}.nii.gz")
        assert label_geometry.ndim == 2
        assert label.shape == (1, *array.shape)
        assert np.array_equal(np.unique(label), [0, 1, 2])
    assert json.loads((folder / "dataset.json").read_text())["nnseg_synthetic"]["shape"] == [64, 56]


# ------------------------------------------------------------------------------------------ existing folders
def test_rerun_with_same_arguments_is_allowed(tmp_path: Path) -> None:
    first = _digest(make_synthetic_dataset(tmp_path, num_cases=2))
    assert _digest(make_synthetic_dataset(tmp_path, num_cases=2)) == first


def test_interrupted_run_is_completed(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=3)
    (folder / "dataset.json").unlink()
    (folder / "labelsTr" / "case_002.nii.gz").unlink()
    make_synthetic_dataset(tmp_path, num_cases=3)
    assert (folder / "dataset.json").is_file()
    assert _cases(folder) == ["case_000", "case_001", "case_002"]


def test_other_dataset_in_the_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=4)
    with pytest.raises(
        ConfigError, match=r"already holds a different dataset \(its dataset.json differs.*overwrite=True"
    ):
        make_synthetic_dataset(tmp_path, num_cases=2)
    (folder / "dataset.json").unlink()
    with pytest.raises(ConfigError, match=r"contains 2 file\(s\) this call would not write"):
        make_synthetic_dataset(tmp_path, num_cases=3)
    (folder / "notes.txt").write_text("keep me")
    make_synthetic_dataset(tmp_path, num_cases=2, overwrite=True)
    assert _cases(folder) == ["case_000", "case_001"]
    assert len(list((folder / "imagesTr").iterdir())) == 2
    assert (folder / "notes.txt").read_text() == "keep me"


def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Dataset001_Synthetic").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        make_synthetic_dataset(tmp_path)


# ------------------------------------------------------------------------------------------ argument errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_cases": 0}, r"num_cases must be an integer >= 1; got 0\. Set num_cases=1 or more"),
        ({"num_cases": 2.0}, r"num_cases must be an integer >= 1; got 2.0"),
        ({"num_test_cases": -1}, r"num_test_cases must be an integer >= 0; got -1"),
        (
            {"num_classes": 1},
            r"num_classes must be an integer in \[2, 10\]; got 1\. Choose num_classes between 2 and 10",
        ),
        ({"num_classes": 11}, r"num_classes must be an integer in \[2, 10\]; got 11"),
        ({"num_channels": 0}, r"num_channels must be an integer >= 1; got 0"),
        ({"modality": "pet"}, r"modality must be one of 'ct', 'mr'; got 'pet'"),
        ({"shape": (32, 48)}, r"shape must be a sequence of 3 ints"),
        ({"shape": (32, 0, 48)}, r"every entry of shape must be an int >= 8"),
        ({"shape": (32, 48, 48), "spacing": (1.0, 1.0)}, r"spacing must have one entry per entry of shape \(3\)"),
        ({"spacing": (1.0, -1.0, 1.0)}, r"every spacing must be a finite number > 0"),
        ({"spacing": (1.0, float("nan"), 1.0)}, r"every spacing must be a finite number > 0"),
        ({"seed": -1}, r"seed must be an integer >= 0; got -1"),
        ({"two_d": "yes"}, r"two_d must be True or False; got 'yes'"),
        ({"file_ending": ".png"}, r"file_ending must be one of '.nii.gz', '.nii', '.nrrd', '.mha'; got '.png'"),
        ({"spacing_jitter": 0.5}, r"spacing_jitter must be a number in \[0, 0.5\)"),
        ({"dataset_name": "a/b"}, r"dataset_name must be a plain folder name"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=r"^make_synthetic_dataset: " + match):
        make_synthetic_dataset(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())


def test_bad_case_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^make_synthetic_case: shape must be a sequence of 2 or 3 ints"):
        make_synthetic_case((8,))
    with pytest.raises(ConfigError, match=r"^make_synthetic_case: num_classes must be an integer in \[2, 10\]; got 0"):
        make_synthetic_case(num_classes=0)
    with pytest.raises(ConfigError, match=r"^make_synthetic_case: seed must be an integer >= 0; got -2"):
        make_synthetic_case(seed=(1, -2))


def test_unusual_dataset_name_warns(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="does not follow nnU-Net's 'DatasetNNN_Name' pattern"):
        folder = make_synthetic_dataset(tmp_path, num_cases=1, dataset_name="my_data")
    assert (folder / "dataset.json").is_file()


# ------------------------------------------------------------------------------------------ CLI
def test_cli_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "synth",
        str(tmp_path),
        "--num-cases",
        "2",
        "--num-test-cases",
        "1",
        "--shape",
        "12",
        "32",
        "32",
        "--spacing",
        "4",
        "1",
        "1",
        "--modality",
        "mr",
        "--num-channels",
        "2",
        "--num-classes",
        "4",
        "--seed",
        "3",
        "--name",
        "Dataset009_Cli",
    ]
    assert main(argv) == 0
    folder = tmp_path / "Dataset009_Cli"
    assert str(folder) in capsys.readouterr().out
    spec = DatasetSpec.load(folder / "dataset.json")
    assert spec.channel_names == ("T2", "ADC")
    assert len(spec.labels) == 4
    assert spec.num_training == 2
    assert _cases(folder, "Ts") == ["case_002"]
    assert read_image(folder / "imagesTr" / "case_000_0001.nii.gz")[1].spacing == (4.0, 1.0, 1.0)


def test_cli_two_d_and_defaults(tmp_path: Path) -> None:
    assert main(["synth", str(tmp_path), "--num-cases", "1", "--two-d"]) == 0
    geometry = read_image(tmp_path / "Dataset001_Synthetic" / "imagesTr" / "case_000_0000.nii.gz")[1]
    assert geometry.ndim == 2


def test_cli_bad_argument_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["synth", str(tmp_path), "--num-classes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "nnseg synth: error: ConfigError: make_synthetic_dataset: num_classes must be an integer in [2, 10]; got 1. Choose num_classes between 2 and 10."
    )


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parity
def test_nnunetv2_accepts_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = make_synthetic_dataset(
        tmp_path, num_cases=3, num_test_cases=1, modality="mr", num_channels=2, num_classes=4
    )
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem
    assert (folder / "dataset.json").is_file()
