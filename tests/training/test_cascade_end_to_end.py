"""The cascade from raw images to evaluated predictions, through the command line, as docs/training.md lists it.

``nnseg synth --large`` writes images the default planner keeps ``3d_lowres`` for (about 256^3 voxels, too
large to train on in the default suite); the fast pipeline plans smaller images with a small GPU memory
target instead, which gives the same cascade configurations on images a CPU trains on in seconds.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from nnseg.checkpoint import Checkpoint
from nnseg.cli.main import main
from nnseg.dataset import DatasetSpec
from nnseg.io import read_segmentation
from nnseg.planning import Plans
from nnseg.workspace import Workspace

CASCADE = ("3d_lowres", "3d_fullres", "3d_cascade_fullres")
TRAIN = ["--iterations-per-epoch", "2", "--num-epochs", "1", "--val-iterations", "1", "--num-workers", "0",
         "--device", "cpu", "--npz"]  # fmt: skip
TINY_FEATURES = 4
"""Features of the first stage of the tiny networks (doubled per stage); the planner's 32 would be slow on CPU."""


def _plans(work: Path) -> Plans:
    return Plans.load(Workspace(work).plans_path("nnUNetPlans"))


def _slim_plans(work: Path) -> None:
    """Shrink the networks of the plans file in place; preprocessing, patch and batch stay the planner's."""
    path = Workspace(work).plans_path("nnUNetPlans")
    data = json.loads(path.read_text())
    for name in ("3d_lowres", "3d_fullres"):
        kwargs = data["configurations"][name]["architecture"]["arch_kwargs"]
        kwargs["features_per_stage"] = [TINY_FEATURES * 2**i for i in range(len(kwargs["features_per_stage"]))]
    path.write_text(json.dumps(data, indent=2))


def _raw_to_plans(tmp_path: Path, synth: list[str], plan: list[str]) -> tuple[Path, Path]:
    """synth -> fingerprint -> plan; return the raw dataset folder and the work folder."""
    assert main(["synth", str(tmp_path / "raw"), "--name", "Dataset002_Cascade", *synth]) == 0
    raw, work = tmp_path / "raw" / "Dataset002_Cascade", tmp_path / "work"
    assert main(["fingerprint", str(raw), "-o", str(work), "--num-workers", "1"]) == 0
    assert main(["plan", str(work), "--no-measure", *plan]) == 0
    return raw, work


def test_large_images_are_planned_with_a_cascade(tmp_path: Path) -> None:
    _, work = _raw_to_plans(tmp_path, ["--large", "--num-cases", "2"], [])
    plans = _plans(work)
    assert set(CASCADE) <= set(plans.configurations)
    assert plans["3d_lowres"].next_stages == ("3d_cascade_fullres",)
    assert plans["3d_cascade_fullres"].previous_stage == "3d_lowres"
    low, full = plans["3d_lowres"].median_image_size_in_voxels, plans["3d_fullres"].median_image_size_in_voxels
    assert np.prod(full) / np.prod(low) >= 2  # nnU-Net's threshold for keeping the low resolution


def test_large_refuses_a_shape(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["synth", str(tmp_path), "--large", "--shape", "64", "64", "64"]) == 2
    assert "large=True sets the shape to (256, 256, 256); got shape [64, 64, 64] as well" in capsys.readouterr().err
    assert main(["synth", str(tmp_path), "--large", "--two-d"]) == 2
    assert "cannot be combined with two_d=True" in capsys.readouterr().err
    assert not (tmp_path / "Dataset001_Synthetic").exists()


def _train_cascade(tmp_path: Path, raw: Path, work: Path, cascade_folds: tuple[str, ...]) -> None:
    """preprocess both stores -> lowres folds 0 and 1 -> cascade-inputs -> the cascade's folds."""
    for configuration in ("3d_lowres", "3d_fullres"):
        assert main(["preprocess", str(work), "-c", configuration, "--num-workers", "1"]) == 0
    case_ids = sorted(p.name.removesuffix(".nii.gz") for p in (raw / "labelsTr").iterdir())
    half = len(case_ids) // 2
    splits = [{"train": case_ids[half:], "val": case_ids[:half]}, {"train": case_ids[:half], "val": case_ids[half:]}]
    splits_file = tmp_path / "splits_2fold.json"
    splits_file.write_text(json.dumps(splits))
    assert main(["cascade-inputs", str(work)]) == 1  # nothing validated yet
    for fold in ("0", "1"):
        assert main(["train", str(work), "-c", "3d_lowres", "-f", fold, *TRAIN, "--splits-file", str(splits_file)]) == 0
    assert main(["cascade-inputs", str(work)]) == 0
    for fold in cascade_folds:
        args = ["train", str(work), "-c", "3d_cascade_fullres", "-f", fold, *TRAIN, "--splits-file", str(splits_file)]
        assert main(args) == 0


def _run_instructions(work: Path, raw: Path, out: Path) -> None:
    """Run find-best's nnseg commands on the test images (without mirroring, to stay fast)."""
    for line in (work / "inference_instructions.txt").read_text().splitlines():
        if not line.startswith("nnseg "):
            continue
        line = line.replace("INPUT_FOLDER", str(raw / "imagesTs")).replace("OUTPUT_FOLDER", str(out))
        argv = shlex.split(line)[1:]
        assert main([*argv, "--no-tta"] if argv[0] == "predict" else argv) == 0, line


@pytest.mark.slow
def test_tiny_cascade_from_raw_to_evaluated_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, work = _raw_to_plans(tmp_path, ["--num-cases", "2", "--num-test-cases", "1", "--shape", "48", "48", "48",
                                         "--lesion-scale", "1.8"], ["--gpu-memory-gb", "0.04"])  # fmt: skip
    assert set(CASCADE) <= set(_plans(work).configurations)
    _slim_plans(work)
    _train_cascade(tmp_path, raw, work, ("0", "1"))
    run = work / "runs" / "nnUNetPlans__3d_cascade_fullres__nnseg"
    first = next(v for k, v in Checkpoint.load(run / "fold_0" / "checkpoint_final.pt").network_weights.items()
                 if k.endswith("conv.weight"))  # fmt: skip
    assert first.shape[:2] == (TINY_FEATURES, 1 + 2)  # the CT channel and one channel per foreground label

    # find-best treats the cascade like any configuration: its cross-validation and the pairwise ensemble
    assert main(["find-best", str(work), "-c", "3d_lowres", "3d_cascade_fullres", "-f", "0", "1"]) == 0
    best = json.loads((work / "best.json").read_text())
    assert [c["name"] for c in best["candidates"]] == ["3d_lowres", "3d_cascade_fullres",
                                                       "ensemble___3d_lowres___3d_cascade_fullres"]  # fmt: skip
    assert (run / "crossval_results_folds_0_1" / "summary.json").is_file()
    _run_instructions(work, raw, tmp_path / "instructed")
    assert (tmp_path / "instructed_PP" / "case_002.nii.gz").is_file()
    capsys.readouterr()

    out = tmp_path / "pred"  # the cascade run alone: its lowres stage runs first, into OUT/.previous_stage
    assert main(["predict", "-i", str(raw / "imagesTs"), "-o", str(out), "-m", str(run), "--no-tta"]) == 0
    spec = DatasetSpec.load(raw / "dataset.json")
    seg, _ = read_segmentation(out / "case_002.nii.gz")
    reference, _ = read_segmentation(raw / "labelsTs" / "case_002.nii.gz")
    assert seg.shape == reference.shape
    assert set(np.unique(seg)) <= set(spec.labels.values())
    assert (out / ".previous_stage" / "case_002.nii.gz").is_file()
    summary = tmp_path / "summary.json"
    assert main(["evaluate", str(out), str(raw / "labelsTs"), "-d", str(raw / "dataset.json"), "-o", str(summary)]) == 0
    assert set(json.loads(summary.read_text())["mean"]) == {"1", "2"}
