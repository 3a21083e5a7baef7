"""Error messages of the predictor, its model loading, its folder runs and the evaluation, pinned."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import dataset_dict, make_nnseg_run, make_nnunet_model_folder, write_images

from nnseg.checkpoint import Checkpoint
from nnseg.dataset import DatasetSpec
from nnseg.errors import CheckpointError, ConfigError
from nnseg.evaluation import EvaluationSummary, case_metrics
from nnseg.inference import (
    CasesFailedError,
    InferenceSettings,
    PredictionError,
    Predictor,
    export_logits,
    prediction_status,
)
from nnseg.inference._model import load_nnunet_checkpoint
from nnseg.inference._parts import PartManifest


def test_predictor_arguments(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model")
    with pytest.raises(ConfigError, match=r"InferenceSettings: tile_step_size must be a number in \(0, 1\]; got 0"):
        Predictor.from_nnunet_model_folder(model, settings=InferenceSettings(tile_step_size=0))
    with pytest.raises(ConfigError, match=r"Predictor.from_nnunet_model_folder: accumulation_dtype must be "
                                          r"torch.float32 or torch.float16; got torch.int32"):  # fmt: skip
        Predictor.from_nnunet_model_folder(model, accumulation_dtype=torch.int32)
    with pytest.raises(ConfigError, match=r"InferenceSettings: device must be a torch device .*; got 'gpu7'"):
        Predictor.from_nnunet_model_folder(model, device="gpu7")
    with pytest.raises(TypeError, match=r"Predictor\(\) got unexpected keyword argument\(s\) \['step'\]"):
        Predictor(Predictor.from_nnunet_model_folder(model).model, step=0.5)
    predictor = Predictor.from_nnunet_model_folder(model)
    with pytest.raises(PredictionError, match=r"num_workers must be a positive int; got 0"):
        predictor.predict_folder(tmp_path, tmp_path / "out", num_workers=0)
    with pytest.raises(PredictionError, match=r"input folder .*nowhere does not exist"):
        predictor.predict_folder(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictionError, match=r"holds no <case>_<XXXX>.nii.gz image files"):
        predictor.predict_folder(tmp_path / "empty", tmp_path / "out")


def test_run_checkpoint_problems(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint must be one of \['final', 'best', 'latest'\]; got 'last'"):
        Predictor.from_run(tmp_path, checkpoint="last")
    with pytest.raises(CheckpointError, match=r"from_run needs at least one run folder"):
        Predictor.from_run([])
    first = make_nnseg_run(tmp_path / "a")
    second = make_nnseg_run(tmp_path / "b", patch=(8, 8, 8))
    with pytest.raises(CheckpointError, match=r"was trained with another plan or dataset than"):
        Predictor.from_run([first, second])
    checkpoint = Checkpoint.load(first / "checkpoint_final.pt")
    older_plan = {k: v for k, v in (checkpoint.plan or {}).items() if k != "nnseg_plans_context"}  # an older checkpoint
    dataclasses.replace(checkpoint, plan=older_plan).save(tmp_path / "c" / "checkpoint_final.pt")
    with pytest.raises(CheckpointError, match=r"cannot rebuild the plan of run .* Pass plans=Plans.load"):
        Predictor.from_run(tmp_path / "c")


def test_nnunet_checkpoint_problems(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model")
    path = model / "fold_0" / "checkpoint_final.pth"
    checkpoint = load_nnunet_checkpoint(path)
    torch.save({**checkpoint, "init_args": {"configuration": "3d_lowres"}}, path)
    with pytest.raises(CheckpointError, match=r"configuration '3d_lowres' recorded in the checkpoint is not in"):
        Predictor.from_nnunet_model_folder(model)
    torch.save({"weights": {}}, path)
    with pytest.raises(CheckpointError, match=r"is not an nnU-Net checkpoint \(no 'network_weights'\)"):
        Predictor.from_nnunet_model_folder(model)
    path.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely"):
        Predictor.from_nnunet_model_folder(model)


def test_a_failing_case_does_not_stop_the_others(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    write_images(tmp_path / "in", num_cases=3, shape=(5, 16, 16))
    (tmp_path / "in" / "case_1_0000.nii.gz").write_bytes(b"not an image")
    predictor = Predictor.from_nnunet_model_folder(model, settings=InferenceSettings(use_mirroring=False))
    with pytest.raises(
        CasesFailedError, match=r"1 of 3 case\(s\) failed \(part 0 of 1\): case_1: ImageIOError"
    ) as info:
        predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    assert list(info.value.failures) == ["case_1"]
    assert prediction_status(tmp_path / "out").missing == ("case_1",)


def test_malformed_manifest_and_export_channels(tmp_path: Path) -> None:
    (tmp_path / "nnseg_parts").mkdir()
    (tmp_path / "nnseg_parts" / "part_0_of_1.json").write_text(json.dumps({"part_id": 0}))
    with pytest.raises(PredictionError, match=r"malformed part manifest .*; delete it and rerun that part"):
        PartManifest.load_all(tmp_path)
    (tmp_path / "nnseg_parts" / "part_0_of_1.json").write_text(json.dumps({"format_version": 7}))
    with pytest.raises(PredictionError, match=r"part manifest format_version 7 is not one this nnseg reads \(1 to 3\); "
                                              r"it was written by a newer nnseg"):  # fmt: skip
        PartManifest.load_all(tmp_path)
    spec = DatasetSpec.from_dict(dataset_dict())
    with pytest.raises(ConfigError, match=r"export: got 2 output channel\(s\) but the dataset has 3 segmentation head"):
        export_logits(np.zeros((2, 4, 4, 4), np.float32), None, spec)  # type: ignore[arg-type]


def test_evaluation_shape_and_summary_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"case x: prediction shape \(2, 2\) differs from reference shape \(2, 3\)"):
        case_metrics(np.zeros((2, 3)), np.zeros((2, 2)), [1], where="case x")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"not a summary.json in nnU-Net's layout"):
        EvaluationSummary.load(tmp_path / "s.json")
    with pytest.raises(ConfigError, match=r"summary file .* does not exist"):
        EvaluationSummary.load(tmp_path / "none.json")


def test_old_predictor_keywords_still_work_with_a_warning(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model")
    with pytest.warns(DeprecationWarning, match=r"Predictor.from_nnunet_model_folder: the keyword argument\(s\) "
                                                 r"\['batch_size', 'step_size', 'use_mirroring'\] are deprecated .* "
                                                 r"settings=InferenceSettings\(tile_batch_size=..., tile_step_size=..., "
                                                 r"use_mirroring=...\)"):  # fmt: skip
        old = Predictor.from_nnunet_model_folder(model, use_mirroring=False, step_size=0.25, batch_size=2)
    assert old.settings == InferenceSettings(use_mirroring=False, tile_step_size=0.25, tile_batch_size=2)
    with pytest.warns(DeprecationWarning, match=r"Predictor: the keyword argument\(s\) \['accumulation_dtype', "
                                                 r"'optimize'\] are deprecated"):  # fmt: skip
        exact = Predictor(old.model, accumulation_dtype=torch.float16, optimize=False)
    assert exact.settings.accumulator == InferenceSettings(accumulator="nnunet_float16").accumulator
    with pytest.warns(DeprecationWarning, match=r"Predictor.from_run: the keyword argument\(s\) \['device'\]"):
        assert Predictor.from_run(make_nnseg_run(tmp_path / "run"), device="cpu").device == torch.device("cpu")
    with pytest.raises(
        ConfigError, match=r"Predictor: pass either settings=InferenceSettings\(...\) or the deprecated"
    ):
        Predictor(old.model, settings=InferenceSettings(), use_mirroring=False)


def test_a_folder_predicted_by_nnseg_0x_is_completed_with_the_same_settings(tmp_path: Path) -> None:
    """Manifests of the old format are upgraded on reading; equal settings are not a conflict."""
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    write_images(tmp_path / "in", num_cases=2, shape=(5, 16, 16))
    predictor = Predictor.from_nnunet_model_folder(model, settings=InferenceSettings(use_mirroring=False))
    predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    path = tmp_path / "out" / "nnseg_parts" / "part_0_of_1.json"
    data = json.loads(path.read_text())
    settings = {k: v for k, v in data["settings"].items() if k not in ("accumulator", "tile_step_size")}
    data.update(format_version=1, settings={**settings, "step_size": 0.5, "use_gaussian": True,
                                            "accumulation_dtype": "torch.float32"})  # fmt: skip
    path.write_text(json.dumps(data))
    (tmp_path / "out" / "case_1.nii.gz").unlink()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False).is_complete
    assert json.loads(path.read_text())["format_version"] == 3
    assert json.loads(path.read_text())["settings"]["accumulator"] == "gaussian"
