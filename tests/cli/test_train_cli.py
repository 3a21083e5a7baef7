"""``nnseg train``: a tiny work folder trained end to end, resumed as a no-op, and bad input with exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from training_data_helpers import write_tiny_work  # noqa: E402

from nnseg.checkpoint import Checkpoint  # noqa: E402
from nnseg.cli._train import CONFIG_FLAGS, config_from_args  # noqa: E402
from nnseg.cli.main import main  # noqa: E402
from nnseg.training._config import TrainerConfig  # noqa: E402
from nnseg.training._split import Split, kfold_splits  # noqa: E402
from nnseg.workspace import Workspace  # noqa: E402

SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work folder with plans, dataset.json and a preprocessed store of the tiny plan (no raw dataset)."""
    workspace = Workspace(tmp_path / "work")
    write_tiny_work(workspace)
    return workspace.root


ARGS = ["--iterations-per-epoch", "1", "--num-epochs", "2", "--val-iterations", "1", "--num-workers", "0",
        "--device", "cpu"]  # fmt: skip


def test_train_a_fold_then_rerun_is_a_no_op(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = ["--lr-schedule", "per_epoch", "--checkpoint-every", "2"]
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, *schedule]) == 0
    run = work / "runs" / "nnUNetPlans__3d_fullres__nnseg" / "fold_0"
    final = run / "checkpoint_final.pt"
    assert f"trained: {final}" in capsys.readouterr().out
    assert Checkpoint.load(final).train_state.step == 2
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


def _train_parser() -> argparse.ArgumentParser:
    from nnseg.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["train"]


# a non-default command-line value for every TrainerConfig field, and the value it must give
NON_DEFAULTS: dict[str, tuple[list[str], object]] = {
    "iterations_per_epoch": (["--iterations-per-epoch", "7"], 7), "num_epochs": (["--num-epochs", "3"], 3),
    "val_iterations_per_epoch": (["--val-iterations", "4"], 4), "initial_lr": (["--initial-lr", "0.001"], 0.001),
    "weight_decay": (["--weight-decay", "0.1"], 0.1), "momentum": (["--momentum", "0.9"], 0.9),
    "nesterov": (["--no-nesterov"], False), "poly_exponent": (["--poly-exponent", "1.5"], 1.5),
    "lr_schedule": (["--lr-schedule", "per_step"], "per_step"),
    "oversample_foreground": (["--oversample-foreground", "0.5"], 0.5),
    "probabilistic_oversampling": (["--probabilistic-oversampling"], True),
    "replay_validation_batches": (["--replay-validation-batches"], True),
    "deep_supervision": (["--no-deep-supervision"], False), "grad_clip_norm": (["--grad-clip-norm", "none"], None),
    "amp": (["--amp", "off"], False), "compile": (["--compile"], True), "cudnn_benchmark": (["--cudnn-benchmark"], True),
    "seed": (["--seed", "5"], 5), "num_loader_workers": (["--num-workers", "0"], 0),
    "checkpoint_every_epochs": (["--checkpoint-every", "3"], 3), "keep_checkpoints": (["--keep-checkpoints", "2"], 2),
    "ema_momentum": (["--ema-momentum", "0.5"], 0.5), "final_validation": (["--no-final-validation"], False),
    "save_probabilities": (["--npz"], True), "validate_with_best": (["--val-best"], True),
    "pretrained_weights": (["--pretrained-weights", "a/b.pt"], "a/b.pt"),
    "augmentation_device": (["--augmentation-device", "cpu"], "cpu"),
}  # fmt: skip


def test_every_trainer_config_field_has_a_flag_with_nnunets_default() -> None:
    parser = _train_parser()
    options = {s for action in parser._actions for s in action.option_strings}
    fields = [f.name for f in dataclasses.fields(TrainerConfig)]
    assert sorted(CONFIG_FLAGS) == sorted(fields) == sorted(NON_DEFAULTS)
    assert all(flag in options for flag in CONFIG_FLAGS.values())
    base = ["WORK", "-c", "3d_fullres", "-f", "0"]
    assert config_from_args(parser.parse_args(base)) == TrainerConfig()  # the CLI's defaults are TrainerConfig's
    for name, (argv, expected) in NON_DEFAULTS.items():
        assert argv[0] == CONFIG_FLAGS[name]
        config = config_from_args(parser.parse_args([*base, *argv]))
        assert getattr(config, name) == expected, name
        changed = [f for f in fields if getattr(config, f) != getattr(TrainerConfig(), f)]
        assert changed == [name]


def test_bad_grad_clip_norm_is_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, "--grad-clip-norm", "big"]) == 2
    assert "--grad-clip-norm must be a number or 'none'; got 'big'" in capsys.readouterr().err


def test_splits_final_json_is_written_to_the_work_folder_as_nnunet(work: Path) -> None:
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "1", *ARGS, "--num-epochs", "1", "--val-iterations",
                 "0", "--no-final-validation"]) == 0  # fmt: skip
    ids = [f"case_{i}" for i in range(len(SHAPES))]
    saved = json.loads((work / "splits_final.json").read_text())
    assert saved == [{"train": list(s.train), "val": list(s.val)} for s in kfold_splits(ids)]
    run = json.loads((work / "runs" / "nnUNetPlans__3d_fullres__nnseg" / "fold_1" / "run.json").read_text())
    assert run["split"]["val"] == saved[1]["val"]


def test_a_splits_file_is_read_and_unknown_cases_are_refused(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "splits_final.json").write_text(json.dumps([{"train": ["case_0", "case_9"], "val": ["case_x"]}]))
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS]) == 2
    err = capsys.readouterr().err
    assert (
        f"the splits file {work / 'splits_final.json'} names 2 case(s) (fold 0) that the preprocessed store "
        "lacks: 'case_9', 'case_x'" in err
    )
    assert not (work / "runs").exists()
    own = work.parent / "own.json"
    own.write_text(json.dumps([{"train": ["case_0", "case_7"], "val": ["case_1"]}]))
    assert main(["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, "--splits-file", str(own)]) == 2
    assert f"the splits file {own} names 1 case(s) (fold 0)" in capsys.readouterr().err


def test_val_only_npz_and_val_best(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS]
    assert main([*command, "--val-only"]) == 2  # never trained: refused, nothing written
    assert "has not finished: checkpoint_final.pt is missing" in capsys.readouterr().err
    assert not (work / "runs").exists()
    assert main([*command, "--no-final-validation"]) == 0
    validation = work / "runs" / "nnUNetPlans__3d_fullres__nnseg" / "fold_0" / "validation"
    assert not validation.exists()
    assert main([*command, "--val-only", "--npz", "--val-best"]) == 0
    assert "validated: " in capsys.readouterr().out
    val = Split.kfold([f"case_{i}" for i in range(len(SHAPES))], 0).val
    assert sorted(p.name for p in validation.glob("*.npz")) == [f"{c}.npz" for c in val]
    assert sorted(p.name for p in validation.glob("*.json") if p.name.startswith("case")) == [f"{c}.json" for c in val]
    with np.load(validation / f"{val[0]}.npz") as npz:
        assert npz["probabilities"].shape[0] == 3


def test_pretrained_weights_from_the_cli(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    command = ["train", str(work), "-c", "3d_fullres", "-f", "0", *ARGS, "--num-epochs", "1", "--no-final-validation"]
    assert main(command) == 0
    pretrained = work / "runs" / "nnUNetPlans__3d_fullres__nnseg" / "fold_0" / "checkpoint_final.pt"
    assert main([*command, "--run-name", "tuned", "--pretrained-weights", str(pretrained)]) == 0
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pretrained.read_bytes()[:100])
    capsys.readouterr()
    assert main([*command, "--run-name", "bad", "--pretrained-weights", str(truncated)]) == 2
    err = capsys.readouterr().err
    assert f"pretrained weights {truncated} cannot be loaded safely" in err
    assert err.count("\n") == 1
    assert not (work / "runs" / "nnUNetPlans__3d_fullres__bad").exists()
    assert torch.load(pretrained, weights_only=True)["network_weights"]
