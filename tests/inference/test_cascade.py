"""The cascade: one-hot previous-stage channels, two-stage folder runs, nnU-Net cascade folders, bad input, parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import blosc2
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from cascade_helpers import make_nnunet_cascade
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from inference_helpers import REGION_LABELS, write_images

from nnseg.dataset import DatasetSpec
from nnseg.errors import CasesFailedError, CheckpointError, EnsembleError, PredictionError
from nnseg.inference import InferenceSettings, Predictor, TrainedModel
from nnseg.inference._ensemble import predict_ensemble
from nnseg.inference._previous_stage import (
    append_previous_stage,
    cascade_input_channels,
    one_hot_foreground,
    resample_to_next_stage,
)
from nnseg.io import read_images, read_segmentation
from nnseg.planning import Plans

NO_TTA = InferenceSettings(use_mirroring=False)


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@settings(max_examples=40, deadline=None)
@given(num_labels=st.integers(1, 5), seg=arrays(np.int16, st.tuples(st.integers(1, 4), st.integers(1, 5)),
                                                 elements=st.integers(-1, 5)))  # fmt: skip
def test_one_hot_channel_k_is_label_k_plus_one(num_labels: int, seg: np.ndarray) -> None:
    labels = tuple(range(1, num_labels + 1))
    spec = DatasetSpec.from_dict({"channel_names": {"0": "CT", "1": "MR"}, "file_ending": ".nii.gz", "numTraining": 1,
                                  "labels": {"background": 0, **{f"l{v}": v for v in labels}}})  # fmt: skip
    assert spec.foreground_labels == labels
    one_hot = one_hot_foreground(seg, spec.foreground_labels)
    assert one_hot.shape == (num_labels, *seg.shape)
    assert one_hot.dtype == np.float32
    assert set(np.unique(one_hot)) <= {0.0, 1.0}
    for k in range(num_labels):
        assert np.array_equal(one_hot[k] == 1, seg == k + 1)
    assert not one_hot[:, seg <= 0].any()  # background and the -1 outside region have no channel
    image = np.random.default_rng(0).normal(size=(2, *seg.shape)).astype(np.float32)
    stacked = append_previous_stage(image, seg[None], spec)
    assert stacked.shape == (2 + num_labels, *seg.shape)
    assert np.array_equal(stacked[:2], image)
    assert np.array_equal(stacked[2:], one_hot)


def test_input_channels_and_region_labels() -> None:
    plans = Plans.from_json(json.loads(json.dumps(_plans())))
    spec = DatasetSpec.from_dict({"channel_names": {"0": "MRI"}, "labels": REGION_LABELS, "regions_class_order": [1, 2],
                                  "numTraining": 1, "file_ending": ".nii.gz"})  # fmt: skip
    assert spec.foreground_labels == (1, 2)  # regions: every label value a region uses
    assert cascade_input_channels(plans["3d_fullres"], spec) == 1
    assert cascade_input_channels(plans["3d_cascade_fullres"], spec) == 3
    assert plans["3d_cascade_fullres"].previous_stage == "3d_lowres"


def _plans() -> dict:
    from cascade_helpers import cascade_plans

    return cascade_plans()[0]


def test_resample_to_next_stage_takes_the_label_of_the_resampled_logits() -> None:
    plans = Plans.from_json(_plans())
    spec = DatasetSpec.from_dict({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2},
                                  "numTraining": 1, "file_ending": ".nii.gz"})  # fmt: skip
    from nnseg.preprocessing import Preprocessor

    case = Preprocessor(plans["3d_lowres"], spec).preprocess(np.ones((1, 8, 12, 12), np.float32), (2.0, 1.0, 1.0))
    logits = torch.randn(3, *case.properties.shape_after_resampling, generator=torch.Generator().manual_seed(0))
    same = resample_to_next_stage(
        logits, case.properties.shape_after_resampling, plans["3d_lowres"], case.properties, spec
    )
    assert np.array_equal(same, logits.argmax(0).numpy())
    larger = resample_to_next_stage(logits, (8, 12, 12), plans["3d_lowres"], case.properties, spec)
    assert larger.shape == (8, 12, 12)
    assert larger.dtype == np.uint8
    assert set(np.unique(larger)) <= {0, 1, 2}


def test_nnunet_cascade_folder_predicts_both_stages_and_resumes(tmp_path: Path) -> None:
    cascade, _ = make_nnunet_cascade(tmp_path / "results", seed=1)
    ids = write_images(tmp_path / "in", num_cases=2)
    predictor = Predictor.from_nnunet_model_folder(cascade, settings=NO_TTA)
    assert predictor.previous_stage is not None
    assert predictor.previous_stage.plan.name == "3d_lowres"
    assert predictor.model.build_network().encoder.stages[0][0].convs[0].conv.in_channels == 3  # image + 2 labels
    status = predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    assert status.is_complete
    for case_id in ids:
        lowres = _array(tmp_path / "out" / ".previous_stage" / f"{case_id}.nii.gz")
        ours = _array(tmp_path / "out" / f"{case_id}.nii.gz")
        assert ours.shape == lowres.shape
        assert len(np.unique(ours)) > 1
        images, geometry = read_images([tmp_path / "in" / f"{case_id}_0000.nii.gz"])
        assert np.array_equal(predictor.predict_array(images, geometry.spacing).segmentation[0], ours)
        assert np.array_equal(
            predictor.predict_case([tmp_path / "in" / f"{case_id}_0000.nii.gz"]).segmentation[0], ours
        )
    # the previous stage matters: an empty previous stage gives another segmentation
    images, geometry = read_images([tmp_path / "in" / "case_0_0000.nii.gz"])
    empty = predictor.predict_array(
        images, geometry.spacing, previous_segmentation=np.zeros(images.shape[1:], np.uint8)
    )
    assert not np.array_equal(empty.segmentation[0], _array(tmp_path / "out" / "case_0.nii.gz"))
    # a rerun redoes nothing; a lost output of either stage is redone, the rest kept
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.nii.gz")}
    (tmp_path / "out" / ".previous_stage" / "case_1.nii.gz").unlink()
    (tmp_path / "out" / "case_1.nii.gz").unlink()
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False).is_complete
    changed = sorted(str(p.relative_to(tmp_path / "out")) for p, t in stamps.items() if p.stat().st_mtime_ns != t)
    assert changed == [".previous_stage/case_1.nii.gz", "case_1.nii.gz"]
    # the lowres predictions given as a folder give the same segmentations
    given = Predictor.from_nnunet_model_folder(cascade, settings=NO_TTA)
    given.predict_folder(tmp_path / "in", tmp_path / "out2", progress=False,
                         previous_stage_dir=tmp_path / "out" / ".previous_stage")  # fmt: skip
    for case_id in ids:
        assert np.array_equal(
            _array(tmp_path / "out2" / f"{case_id}.nii.gz"), _array(tmp_path / "out" / f"{case_id}.nii.gz")
        )


def test_sharded_parts_run_both_stages_for_their_own_cases(tmp_path: Path) -> None:
    cascade, _ = make_nnunet_cascade(tmp_path / "results", seed=2)
    write_images(tmp_path / "in", num_cases=3)
    predictor = Predictor.from_nnunet_model_folder(cascade, settings=NO_TTA)
    from nnseg.sharding import Shard

    status = predictor.predict_folder(tmp_path / "in", tmp_path / "out", shard=Shard(1, 2), progress=False)
    assert sorted(p.name for p in (tmp_path / "out" / ".previous_stage").glob("case_*")) == ["case_1.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "out").glob("case_*")) == ["case_1.nii.gz"]
    assert not status.is_complete
    assert status.missing == ("case_0", "case_2")
    assert predictor.predict_folder(tmp_path / "in", tmp_path / "out", shard=Shard(0, 2), progress=False).is_complete


def test_predicted_next_stage_files_are_read_on_the_preprocessed_grid(tmp_path: Path) -> None:
    cascade, _ = make_nnunet_cascade(tmp_path / "results", seed=3)
    ids = write_images(tmp_path / "in", num_cases=2)
    predictor = Predictor.from_nnunet_model_folder(cascade, settings=NO_TTA)
    predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    (tmp_path / "b2nd").mkdir()
    (tmp_path / "npz").mkdir()
    for case_id in ids:  # what nnU-Net's lowres validation stores: labels on the cascade's preprocessed grid
        images, geometry = read_images([tmp_path / "in" / f"{case_id}_0000.nii.gz"])
        lowres = read_segmentation(tmp_path / "out" / ".previous_stage" / f"{case_id}.nii.gz")[0]
        seg = predictor.preprocessor.preprocess(images, geometry.spacing, seg=lowres).seg
        grid = np.maximum(np.asarray(seg)[0], 0).astype(np.uint8)
        blosc2.asarray(np.ascontiguousarray(grid), urlpath=str(tmp_path / "b2nd" / f"{case_id}.b2nd"), mode="w")
        np.savez(tmp_path / "npz" / f"{case_id}.npz", seg=grid)
    for source in ("b2nd", "npz"):
        predictor.predict_folder(tmp_path / "in", tmp_path / f"from_{source}", progress=False,
                                 previous_stage_dir=tmp_path / source)  # fmt: skip
        for case_id in ids:
            assert np.array_equal(_array(tmp_path / f"from_{source}" / f"{case_id}.nii.gz"),
                                  _array(tmp_path / "out" / f"{case_id}.nii.gz"))  # fmt: skip
    np.savez(tmp_path / "npz" / "case_1.npz", seg=np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(CasesFailedError, match=r"case_1: PredictionError: .*case_1.npz: previous-stage segmentation of shape "
                       r"\(3, 4, 5\) does not fit case 'case_1', whose preprocessed grid is"):  # fmt: skip
        predictor.predict_folder(
            tmp_path / "in", tmp_path / "bad_npz", progress=False, previous_stage_dir=tmp_path / "npz"
        )


def test_bad_cascade_inputs_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    cascade, lowres = make_nnunet_cascade(tmp_path / "results", seed=4, with_lowres=False)
    with pytest.raises(
        CheckpointError,
        match=r"is a cascade model \('3d_cascade_fullres' needs the '3d_lowres' stage "
        r"first\) but its 3d_lowres model folder .*nnUNetTrainer__nnUNetPlans__3d_lowres does not exist",
    ):
        Predictor.from_nnunet_model_folder(cascade)
    other, _ = make_nnunet_cascade(tmp_path / "other", seed=4, lowres_plans_name="nnUNetResEncUNetMPlans")
    with pytest.raises(
        CheckpointError,
        match=r"the previous stage's plans name is 'nnUNetResEncUNetMPlans', expected "
        r"'nnUNetPlans'; the lowres model was trained with other plans",
    ):
        Predictor.from_nnunet_model_folder(other)
    alone = Predictor(TrainedModel.from_nnunet_model_folder(cascade), settings=NO_TTA)  # no previous stage
    ids = write_images(tmp_path / "in", num_cases=2)
    with pytest.raises(
        PredictionError,
        match=r"'3d_cascade_fullres' is a cascade stage and needs the '3d_lowres' "
        r"predictions first; give previous_stage_dir \(--prev-stage-predictions DIR\)",
    ):
        alone.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    (tmp_path / "prev").mkdir()
    shutil.copy(tmp_path / "in" / "case_0_0000.nii.gz", tmp_path / "prev" / "case_0.nii.gz")
    with pytest.raises(
        PredictionError,
        match=r"--prev-stage-predictions .*prev lacks the previous-stage segmentation "
        r"of 1 case\(s\): case_1; expected <case>.nii.gz .* Nothing was predicted.",
    ):
        alone.predict_folder(tmp_path / "in", tmp_path / "out", progress=False, previous_stage_dir=tmp_path / "prev")
    for case_id in ids:  # label maps with a label 7 the dataset does not have
        image = sitk.ReadImage(str(tmp_path / "in" / f"{case_id}_0000.nii.gz"))
        labels = sitk.GetImageFromArray(np.full(sitk.GetArrayFromImage(image).shape, 7, np.uint8))
        labels.CopyInformation(image)
        sitk.WriteImage(labels, str(tmp_path / "prev" / f"{case_id}.nii.gz"))
    with pytest.raises(
        PredictionError,
        match=r"case_0.nii.gz \(nothing was predicted\): the previous-stage segmentation "
        r"holds label\(s\) \[7\] that .* does not have \(labels \[0, 1, 2\]\)",
    ):
        alone.predict_folder(tmp_path / "in", tmp_path / "out", progress=False, previous_stage_dir=tmp_path / "prev")
    assert not any((tmp_path / "out").glob("case_*"))  # nothing half-written
    images, geometry = read_images([tmp_path / "in" / "case_0_0000.nii.gz"])
    with pytest.raises(PredictionError, match=r"previous-stage segmentation of shape \(2, 3, 4\) does not fit case ''"):
        alone.predict_array(images, geometry.spacing, previous_segmentation=np.zeros((2, 3, 4), np.uint8))


def test_cascades_are_refused_as_ensemble_members(tmp_path: Path) -> None:
    cascade, lowres = make_nnunet_cascade(tmp_path / "results", seed=5)
    members = [Predictor.from_nnunet_model_folder(lowres), Predictor.from_nnunet_model_folder(cascade)]
    with pytest.raises(EnsembleError, match=r"-m B is a cascade stage \('3d_cascade_fullres'\); cascades are not"):
        predict_ensemble(members, tmp_path / "in", tmp_path / "out", names=["A", "B"])


@pytest.mark.parity
@pytest.mark.parametrize("mirroring", [False, True], ids=["no_tta", "tta"])
def test_cascade_segmentations_equal_nnunets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirroring: bool) -> None:
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    module = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    cascade, lowres = make_nnunet_cascade(tmp_path / "results", seed=6)
    ids = write_images(tmp_path / "in", num_cases=2)
    for folder, output, previous in ((lowres, "nn_low", None), (cascade, "nn", str(tmp_path / "nn_low"))):
        reference = module.nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                           perform_everything_on_device=False, device=torch.device("cpu"),
                                           verbose=False, allow_tqdm=False)  # fmt: skip
        reference.initialize_from_trained_model_folder(str(folder), use_folds=(0,))
        (tmp_path / output).mkdir()
        reference.predict_from_files_sequential(str(tmp_path / "in"), str(tmp_path / output), False, True, previous)
    settings = InferenceSettings(use_mirroring=mirroring)
    Predictor.from_nnunet_model_folder(cascade, settings=settings.with_nnunet_numerics()).predict_folder(
        tmp_path / "in", tmp_path / "ours16", progress=False
    )
    ours32 = Predictor.from_nnunet_model_folder(cascade, settings=settings)
    ours32.predict_folder(tmp_path / "in", tmp_path / "ours32", progress=False)
    ours32.predict_folder(tmp_path / "in", tmp_path / "given32", progress=False, previous_stage_dir=tmp_path / "nn_low")
    agreement, given = [], []
    for case_id in ids:
        theirs = _array(tmp_path / "nn" / f"{case_id}.nii.gz")
        assert len(np.unique(theirs)) > 1  # a meaningful comparison
        assert np.array_equal(_array(tmp_path / "ours16" / ".previous_stage" / f"{case_id}.nii.gz"),
                              _array(tmp_path / "nn_low" / f"{case_id}.nii.gz"))  # fmt: skip
        assert np.array_equal(_array(tmp_path / "ours16" / f"{case_id}.nii.gz"), theirs)  # float16: identical
        agreement.append(_array(tmp_path / "ours32" / f"{case_id}.nii.gz") == theirs)
        given.append(_array(tmp_path / "given32" / f"{case_id}.nii.gz") == theirs)
    # float32 blending differs only where nnU-Net's float16 rounding flips a near-tie (random weights have many)
    assert np.concatenate([a.ravel() for a in agreement]).mean() >= 0.999
    assert np.concatenate([a.ravel() for a in given]).mean() >= 0.999
