"""Predictor: loading models, fold ensembles, export geometry, regions, bad input, and parity with nnU-Net."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from inference_helpers import REGION_LABELS, make_nnseg_run, make_nnunet_model_folder, write_images

from nnseg.errors import CheckpointError
from nnseg.inference import CasesFailedError, InferenceSettings, PredictionError, Predictor
from nnseg.inference._export import paint_regions

NO_TTA = InferenceSettings(use_mirroring=False)


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_outputs_keep_the_input_geometry_and_shape_with_a_transposed_plan(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1, transpose=(2, 0, 1), spacing=(1.0, 2.0, 1.0))
    ids = write_images(tmp_path / "in", num_cases=2)
    settings = InferenceSettings(use_mirroring=False, save_probabilities=True)
    status = Predictor.from_nnunet_model_folder(model, settings=settings).predict_folder(
        tmp_path / "in", tmp_path / "out", progress=False
    )
    assert status.is_complete
    for case_id in ids:
        source = sitk.ReadImage(str(tmp_path / "in" / f"{case_id}_0000.nii.gz"))
        output = sitk.ReadImage(str(tmp_path / "out" / f"{case_id}.nii.gz"))
        assert output.GetSize() == source.GetSize()
        assert output.GetSpacing() == source.GetSpacing()
        assert output.GetOrigin() == source.GetOrigin()
        assert output.GetDirection() == source.GetDirection()
        seg = sitk.GetArrayFromImage(output)
        assert set(np.unique(seg)) <= {0, 1, 2}
        assert (seg[:, :1] == 0).all()  # outside the nonzero crop: background
        probabilities = np.load(tmp_path / "out" / f"{case_id}.npz")["probabilities"]
        assert probabilities.shape == (3, *seg.shape)
        assert np.allclose(probabilities.sum(0), 1, atol=1e-5)
        assert np.array_equal(probabilities.argmax(0), seg)
        assert json.loads((tmp_path / "out" / f"{case_id}.json").read_text())["transpose_forward"] == [2, 0, 1]


def test_fold_ensemble_averages_logits(tmp_path: Path) -> None:
    runs = [make_nnseg_run(tmp_path / f"fold_{k}", seed=k) for k in range(2)]
    data = np.random.default_rng(0).normal(size=(1, 10, 20, 18)).astype(np.float32)
    single = [Predictor.from_run(run, settings=NO_TTA).predict_logits(data) for run in runs]
    ensemble = Predictor.from_run(runs, settings=NO_TTA)
    assert torch.allclose(ensemble.predict_logits(data), (single[0] + single[1]) / 2, atol=1e-6)
    assert ensemble.mirror_axes == ()
    assert Predictor.from_run(runs[0]).mirror_axes == (0, 1, 2)
    assert Predictor.from_run(runs[0], settings=InferenceSettings(mirror_axes=(1, 2))).mirror_axes == (1, 2)


def test_two_d_model_on_two_d_images(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1, patch=(16, 16))
    write_images(tmp_path / "in", num_cases=1, shape=(1, 21, 19), two_d=True)
    Predictor.from_nnunet_model_folder(model).predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    output = sitk.ReadImage(str(tmp_path / "out" / "case_0.nii.gz"))
    assert output.GetDimension() == 2
    assert output.GetSize() == (19, 21)


def test_regions_are_painted_in_order(tmp_path: Path) -> None:
    probabilities = torch.tensor([[0.9, 0.9, 0.2, 0.6], [0.7, 0.1, 0.8, 0.4]])
    assert paint_regions(probabilities, (1, 2)).tolist() == [2, 1, 2, 1]
    model = make_nnunet_model_folder(tmp_path / "model", seed=1, labels=REGION_LABELS)
    images = np.random.default_rng(1).normal(size=(1, 9, 20, 18)).astype(np.float32)
    result = Predictor.from_nnunet_model_folder(model, settings=NO_TTA).predict_array(
        images, (2.0, 1.0, 1.0), with_probabilities=True
    )
    assert result.probabilities is not None
    assert result.probabilities.shape == (2, 9, 20, 18)
    expected = np.where(result.probabilities[1] > 0.5, 2, np.where(result.probabilities[0] > 0.5, 1, 0))
    assert np.array_equal(result.segmentation[0], expected)


def test_bad_models_are_refused(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", folds=(0, 2))
    with pytest.raises(
        CheckpointError, match=r"fold\(s\) \['1'\] have no checkpoint_final.pth; folds with it: \['0', '2'\]"
    ):
        Predictor.from_nnunet_model_folder(model, folds=(0, 1))
    assert len(Predictor.from_nnunet_model_folder(model).model.weights) == 2  # auto-detected folds
    other = make_nnunet_model_folder(tmp_path / "other", stages=3)
    (model / "fold_2" / "checkpoint_final.pth").replace(other / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(CheckpointError, match=r"the weights do not match the network of plan 'nnUNetPlans'"):
        Predictor.from_nnunet_model_folder(other)
    with pytest.raises(CheckpointError, match=r"has no fold_<k>/checkpoint_best.pth"):
        Predictor.from_nnunet_model_folder(model, checkpoint_name="checkpoint_best.pth")
    with pytest.raises(
        CheckpointError, match=r"run folder .* has no checkpoint_best.pt; found \['checkpoint_final.pt'\]"
    ):
        Predictor.from_run(make_nnseg_run(tmp_path / "run"), checkpoint="best")


class _Payload:
    """Stands for arbitrary code inside a pickle: a safe load must refuse to build it."""


def test_checkpoints_with_foreign_objects_are_not_unpickled(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model")
    path = model / "fold_0" / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "trainer_name": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"cannot be loaded safely"):
        Predictor.from_nnunet_model_folder(model)


def test_bad_inputs_and_foreign_output_folders(tmp_path: Path) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    write_images(tmp_path / "in", num_cases=2)
    (tmp_path / "in" / "case_1_0000.nii.gz").rename(tmp_path / "in" / "case_1_0001.nii.gz")
    predictor = Predictor.from_nnunet_model_folder(model, settings=NO_TTA)
    with pytest.raises(
        CasesFailedError,
        match=r"^1 of 2 case\(s\) failed \(part 0 of 1\): case_1: missing channel "
        r"file\(s\) \[0\]; the model expects exactly 1 channel\(s\) \['MRI'\] \(_0000 to _0000\)",
    ):
        predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").glob("case_*")) == ["case_0.nii.gz"]  # the good case is written
    (tmp_path / "in2").mkdir()
    (tmp_path / "in" / "case_1_0001.nii.gz").rename(tmp_path / "in2" / "case_1_0001.nii.gz")
    with pytest.raises(PredictionError, match=r"no case has the channels the model expects: case_1: missing channel"):
        predictor.predict_folder(tmp_path / "in2", tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()  # nothing half-written
    (tmp_path / "in2" / "case_1_0001.nii.gz").rename(tmp_path / "in" / "case_1_0000.nii.gz")  # the fix
    predictor.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    other = Predictor.from_nnunet_model_folder(make_nnunet_model_folder(tmp_path / "m2", seed=5), settings=NO_TTA)
    with pytest.raises(PredictionError, match=r"parts of different runs are mixed \(model differs"):
        other.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    with pytest.raises(
        PredictionError, match=r"was predicted with other settings \(mirror_axes: \[\] there, \[0, 1, 2\] now"
    ):
        Predictor.from_nnunet_model_folder(model).predict_folder(tmp_path / "in", tmp_path / "out", progress=False)
    constant = Predictor.from_nnunet_model_folder(
        model, settings=InferenceSettings(use_mirroring=False, accumulator="constant")
    )
    with pytest.raises(PredictionError, match=r"other settings \(accumulator: 'gaussian' there, 'constant' now\)"):
        constant.predict_folder(tmp_path / "in", tmp_path / "out", progress=False)


@pytest.mark.parity
@pytest.mark.parametrize("mirroring", [False, True], ids=["no_tta", "tta"])
def test_segmentations_equal_nnunets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mirroring: bool) -> None:
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    module = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    ids = write_images(tmp_path / "in", num_cases=2)
    reference = module.nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                       perform_everything_on_device=False, device=torch.device("cpu"),
                                       verbose=False, allow_tqdm=False)  # fmt: skip
    reference.initialize_from_trained_model_folder(str(model), use_folds=(0,))
    (tmp_path / "nn").mkdir()
    reference.predict_from_files_sequential(str(tmp_path / "in"), str(tmp_path / "nn"), False, True, None)
    settings = InferenceSettings(use_mirroring=mirroring)
    exact = Predictor.from_nnunet_model_folder(model, settings=settings.with_nnunet_numerics())
    exact.predict_folder(tmp_path / "in", tmp_path / "ours16", progress=False)
    Predictor.from_nnunet_model_folder(model, settings=settings).predict_folder(
        tmp_path / "in", tmp_path / "ours32", progress=False
    )
    agreement = []
    for case_id in ids:
        theirs = _array(tmp_path / "nn" / f"{case_id}.nii.gz")
        assert len(np.unique(theirs)) > 1  # a meaningful comparison
        assert np.array_equal(_array(tmp_path / "ours16" / f"{case_id}.nii.gz"), theirs)  # float16: identical
        agreement.append(_array(tmp_path / "ours32" / f"{case_id}.nii.gz") == theirs)
    # float32 accumulation differs only where nnU-Net's float16 rounding flips a near-tie (random weights have many)
    assert np.concatenate([a.ravel() for a in agreement]).mean() >= 0.995


def test_final_validation_exports_region_logits_as_the_predictor_does(tmp_path: Path) -> None:
    """Regions: resample the logits first, then sigmoid and threshold (nnU-Net's order), in both code paths."""
    from nnseg.training._final_validation import validate_cases

    model = make_nnunet_model_folder(tmp_path / "model", seed=0, labels=REGION_LABELS)
    predictor = Predictor.from_nnunet_model_folder(
        model, settings=InferenceSettings(use_mirroring=False, optimize=False)
    )
    images = np.random.default_rng(4).normal(size=(1, 7, 23, 17)).astype(np.float32)
    # resampled both ways, so the order matters: sigmoid before resampling changes 166 of 2737 voxels here
    case = predictor.preprocessor.preprocess(images, (3.0, 0.7, 1.3))
    expected = predictor.export(predictor.predict_logits(case.data), case).segmentation

    class Store:  # the one method validate_cases reads
        def read_case(self, case_id: str) -> object:
            return case

    network = predictor.model.build_network()
    validate_cases(network, Store(), ["case_0"], patch_size=predictor.plan.patch_size, spec=predictor.spec,  # type: ignore[arg-type]
                   out_dir=tmp_path / "validation", device=torch.device("cpu"), mirror_axes=None)  # fmt: skip
    ours = np.load(tmp_path / "validation" / "case_0.npy")
    assert ours.shape == images.shape[1:]
    assert len(np.unique(ours)) == 3  # background and both regions: a meaningful comparison
    assert np.array_equal(ours, expected[0])
