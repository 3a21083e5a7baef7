"""``nnseg train``: a tiny work folder trained end to end, resumed as a no-op, and bad input with exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from training_data_helpers import INTENSITY, make_plan, make_spec, threshold_case, write_store  # noqa: E402

from nnseg.cli.main import main  # noqa: E402
from nnseg.planning import Plans  # noqa: E402
from nnseg.preprocessing import store_name  # noqa: E402
from nnseg.training._split import Split  # noqa: E402
from nnseg.workspace import Workspace  # noqa: E402

SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work folder with plans, dataset.json and a preprocessed store of the tiny plan (no raw dataset)."""
    plan, spec = make_plan(), make_spec()
    workspace = Workspace(tmp_path / "work")
    plans = Plans.from_json({
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [24, 24, 24],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": plan.to_json()}, "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {"0": dict(INTENSITY)},
    })  # fmt: skip
    plans.save(workspace.plans_path("nnUNetPlans"))
    spec.save(workspace.dataset_json_path)
    cases = {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)}
    write_store(workspace.preprocessed_dir(store_name(plans["3d_fullres"], spec)), plans["3d_fullres"], spec, cases)
    return workspace.root


ARGS = ["--iterations-per-epoch", "1", "--num-epochs", "2", "--val-iterations", "1", "--num-workers", "0",
        "--device", "cpu"]  # fmt: skip


def test_train_a_fold_then_rerun_is_a_no_op(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = ["--lr-schedule", "per_epoch", "--checkpoint-every", "2"]
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, *schedule]) == 0
    run = work / "runs" / "nnUNetPlans__3d_fullres__nnseg" / "fold_0"
    final = run / "checkpoint_final.pt"
    assert f"trained: {final}" in capsys.readouterr().out
    assert torch.load(final, weights_only=True)["step"] == 2
    val = Split.kfold([f"case_{i}" for i in range(len(SHAPES))], 0).val  # nnU-Net's fold 0
    assert sorted(p.name for p in (run / "validation").glob("*.npy")) == [f"{c}.npy" for c in val]
    config = json.loads((run / "run.json").read_text())["config"]
    assert (config["lr_schedule"], config["checkpoint_every_epochs"], config["num_epochs"]) == ("per_epoch", 2, 2)
    before = final.read_bytes()
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, "--lr-schedule", "per_epoch"]) == 0
    assert final.read_bytes() == before
    capsys.readouterr()
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, "--lr-schedule", "per_step"]) == 2
    err = capsys.readouterr().err  # another schedule: refused
    assert "config.lr_schedule is 'per_epoch' in the folder, 'per_step' in this run" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-f", "x"], "-f/--fold must be an integer or 'all'; got 'x'"),
        (["-f", "0", "--plans", "Other"], "Other.json"),
        (["-f", "0", "--num-epochs", "0"], "num_epochs must be an integer >= 1"),
        (["-f", "0", "--device", "cuda:9"], "device 'cuda:9'"),
        (["-f", "0", "--iterations-per-epoch", "0"], "iterations_per_epoch must be an integer >= 1; got 0"),
        (["-f", "0", "--checkpoint-every", "0"], "checkpoint_every_epochs must be an integer >= 1; got 0"),
        (["-f", "0", "--splits-file", "missing.json"], "cannot read the splits file missing.json"),
    ],
)
def test_bad_input_exits_2_with_one_line(work: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                         message: str) -> None:  # fmt: skip
    assert main(["train", str(work), "-c", "3d_fullres", *ARGS, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_missing_store_names_the_preprocess_command(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted((work / "preprocessed").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS]) == 2
    assert f"run `nnseg preprocess {work} -c 3d_fullres --plans nnUNetPlans` first" in capsys.readouterr().err
