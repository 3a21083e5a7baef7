"""Probability-space ensembles of prediction folders: the arithmetic, regions, resume, shards, bad input, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnseg.cli import main as cli
from nnseg.dataset import DatasetSpec
from nnseg.inference._ensemble import EnsembleError, ensemble_folders
from nnseg.io import ImageGeometry, read_image, read_segmentation
from nnseg.preprocessing import CaseProperties
from nnseg.sharding import Shard

GEOMETRY = ImageGeometry((1.5, 1.0, 2.0), (3.0, 4.0, -5.0), tuple(float(v) for v in np.eye(3).ravel()))
SHAPE = (3, 4, 5)
LABELS = DatasetSpec.from_dict({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                                "numTraining": 3, "file_ending": ".nii.gz"})  # fmt: skip
REGIONS = DatasetSpec.from_dict({"channel_names": {"0": "MR"}, "labels": {"background": 0, "whole": [1, 2], "core": 2},
                                 "regions_class_order": [1, 2], "numTraining": 3, "file_ending": ".nii.gz"})  # fmt: skip


def _properties() -> CaseProperties:
    return CaseProperties(spacing=(2.0, 1.0, 1.5), transpose_forward=(0, 1, 2), shape_before_cropping=SHAPE,
                          bbox_used_for_cropping=((0, 3), (0, 4), (0, 5)), shape_after_cropping_and_before_resampling=SHAPE,
                          shape_after_resampling=SHAPE, target_spacing=(2.0, 1.0, 1.5), geometry=GEOMETRY)  # fmt: skip


def _member(folder: Path, cases: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for case, probabilities in cases.items():
        np.savez_compressed(folder / f"{case}.npz", probabilities=probabilities.astype(np.float32))
        _properties().save(folder / f"{case}.json")
    return folder


def _random(rng: np.random.Generator, channels: int, softmax: bool = True) -> np.ndarray:
    values = rng.random((channels, *SHAPE)).astype(np.float32)
    return values / values.sum(0, keepdims=True) if softmax else values


def test_ensemble_is_the_argmax_of_the_averaged_probabilities(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = {c: _random(rng, 3) for c in ("c1", "c2")}
    b = {c: _random(rng, 3) for c in ("c1", "c2")}
    members = [_member(tmp_path / "a", a), _member(tmp_path / "b", b)]
    written = ensemble_folders(members, tmp_path / "out", LABELS, save_probabilities=True)
    assert written == ["c1", "c2"]
    for case in written:
        seg, geometry = read_segmentation(tmp_path / "out" / f"{case}.nii.gz")
        mean = (a[case] + b[case]) / 2
        assert np.array_equal(seg[0], mean.argmax(0))
        assert geometry == GEOMETRY
        with np.load(tmp_path / "out" / f"{case}.npz") as saved:
            np.testing.assert_allclose(saved["probabilities"], mean, rtol=1e-6)
    assert DatasetSpec.load(tmp_path / "out" / "dataset.json") == LABELS


def test_regions_are_painted_from_the_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = _random(rng, 2, softmax=False), _random(rng, 2, softmax=False)
    ensemble_folders([_member(tmp_path / "a", {"c": a}), _member(tmp_path / "b", {"c": b})], tmp_path / "out", REGIONS)
    seg, _ = read_segmentation(tmp_path / "out" / "c.nii.gz")
    mean = (a + b) / 2
    expected = np.where(mean[1] > 0.5, 2, np.where(mean[0] > 0.5, 1, 0))
    assert np.array_equal(seg[0], expected)


def test_shards_split_the_cases_and_reruns_skip_finished_ones(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cases = [f"c{i}" for i in range(5)]
    members = [_member(tmp_path / m, {c: _random(rng, 3) for c in cases}) for m in ("a", "b")]
    assert ensemble_folders(members, tmp_path / "out", LABELS, shard=Shard(1, 2)) == ["c1", "c3"]
    assert ensemble_folders(members, tmp_path / "out", LABELS, shard=Shard(1, 2)) == []
    assert ensemble_folders(members, tmp_path / "out", LABELS) == ["c0", "c2", "c4"]
    with pytest.raises(EnsembleError, match="holds another ensemble"):
        ensemble_folders(members, tmp_path / "out", LABELS, save_probabilities=True)


def test_bad_members_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = _member(tmp_path / "a", {"c1": _random(rng, 3), "c2": _random(rng, 3)})
    b = _member(tmp_path / "b", {"c1": _random(rng, 3)})
    with pytest.raises(EnsembleError, match=r"different cases: .*b lacks the probabilities of 1 case\(s\).*: c2"):
        ensemble_folders([a, b], tmp_path / "out", LABELS)
    np.savez_compressed(b / "c2.npz", probabilities=_random(rng, 2))
    _properties().save(b / "c2.json")
    with pytest.raises(EnsembleError, match=r"c2.npz holds probabilities of shape \(2, 3, 4, 5\); expected 3 channel"):
        ensemble_folders([a, b], tmp_path / "out", LABELS)
    (b / "c2.npz").write_bytes(b"not a zip file")
    with pytest.raises(EnsembleError, match=r"c2.npz is not a readable probabilities file"):
        ensemble_folders([a, b], tmp_path / "out", LABELS)
    np.savez_compressed(b / "c2.npz", probabilities=np.zeros((3, 3, 4, 6), np.float32))
    with pytest.raises(EnsembleError, match=r"case c2: the members' probabilities differ in shape"):
        ensemble_folders([a, b], tmp_path / "out", LABELS)
    with pytest.raises(EnsembleError, match="two or more different prediction folders"):
        ensemble_folders([a], tmp_path / "out", LABELS)
    assert not (tmp_path / "out").exists()


def test_cli_ensemble_and_bad_input_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    a = _member(tmp_path / "a", {"c1": _random(rng, 3)})
    b = _member(tmp_path / "b", {"c1": _random(rng, 3)})
    (tmp_path / "dataset.json").write_text(json.dumps(LABELS.to_dict()))
    assert cli.main(["ensemble", "-i", str(a), str(b), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "c1.nii.gz").is_file()
    c = _member(tmp_path / "c", {"c9": _random(rng, 3)})
    assert cli.main(["ensemble", "-i", str(a), str(c), "-o", str(tmp_path / "out2")]) == 2
    assert "EnsembleError: the members hold different cases" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_ensemble_of_real_predictor_outputs_keeps_the_source_geometry(tmp_path: Path) -> None:
    from inference_helpers import make_nnunet_model_folder, write_images

    from nnseg.inference import InferenceSettings, Predictor

    ids = write_images(tmp_path / "in", num_cases=2)
    members = []
    for seed in (1, 2):
        model = make_nnunet_model_folder(tmp_path / f"model{seed}", seed=seed, transpose=(2, 0, 1))
        Predictor.from_nnunet_model_folder(model, settings=InferenceSettings(use_mirroring=False)).predict_folder(
            tmp_path / "in", tmp_path / f"pred{seed}", progress=False, save_probabilities=True)  # fmt: skip
        members.append(tmp_path / f"pred{seed}")
    spec = DatasetSpec.load(tmp_path / "model1" / "dataset.json")
    assert ensemble_folders(members, tmp_path / "out", spec) == ids
    for case in ids:
        seg, geometry = read_segmentation(tmp_path / "out" / f"{case}.nii.gz")
        _, source = read_image(tmp_path / "in" / f"{case}_0000.nii.gz")
        with np.load(members[0] / f"{case}.npz") as a, np.load(members[1] / f"{case}.npz") as b:
            mean = (a["probabilities"] + b["probabilities"]) / 2
        assert np.array_equal(seg[0], mean.argmax(0))
        assert geometry == source
