"""``nnseg predict``: a sharded run with --status, and one-line errors for bad input."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from nnseg.cli import main as cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import make_nnseg_run, make_nnunet_model_folder, write_images  # noqa: E402


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the subcommand if nnseg/cli/main.py does not list it yet."""
    if "nnseg.cli._predict" not in cli.SUBCOMMAND_MODULES:
        monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", (*cli.SUBCOMMAND_MODULES, "nnseg.cli._predict"))


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


def test_parts_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    write_images(tmp_path / "in", num_cases=3, shape=(5, 16, 16))
    out = str(tmp_path / "out")
    assert cli.main(["predict", "--status", "-o", out]) == 1
    assert "no nnseg prediction run found" in capsys.readouterr().out
    base = ["predict", "-i", str(tmp_path / "in"), "-o", out, "-m", str(model), "--no-tta"]
    assert cli.main([*base, "--num-parts", "2", "--part-id", "1"]) == 0
    assert "part 1 of 2 done; the run is complete once every part has run" in capsys.readouterr().out
    assert cli.main(["predict", "--status", "-o", out]) == 1
    report = capsys.readouterr().out
    assert "part 0 of 2: not started, 0/2 case(s) done; missing: case_0, case_2" in report
    assert "part 1 of 2: complete, 1/1 case(s) done" in report
    assert "INCOMPLETE: 2 case(s) missing" in report
    assert cli.main([*base, "--num-parts", "2", "--part-id", "0"]) == 0
    assert cli.main(["predict", "--status", "-o", out]) == 0
    assert f"{out}: COMPLETE" in capsys.readouterr().out


def test_nnseg_run_folders_of_folds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for fold in (0, 1):
        make_nnseg_run(tmp_path / "runs" / f"fold_{fold}", seed=fold)
    write_images(tmp_path / "in", num_cases=1, shape=(5, 16, 16))
    args = [
        "predict",
        "-i",
        str(tmp_path / "in"),
        "-o",
        str(tmp_path / "out"),
        "-m",
        str(tmp_path / "runs"),
        "--no-tta",
    ]
    assert cli.main(args) == 0
    assert "COMPLETE" in capsys.readouterr().out
    assert (tmp_path / "out" / "case_0.nii.gz").is_file()


def test_bad_input_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_nnunet_model_folder(tmp_path / "model")
    write_images(tmp_path / "in", num_cases=1, shape=(5, 16, 16))
    base = ["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model)]
    assert cli.main([*base, "--num-parts", "3", "--part-id", "3"]) == 2
    assert "Shard: index must be an integer in [0, 2]; got 3. Choose index between 0 and 2" in _one_line_error(capsys)
    assert cli.main([*base, "-f", "4"]) == 2
    assert "fold(s) ['4'] have no checkpoint_final.pth" in _one_line_error(capsys)
    assert cli.main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tmp_path)]) == 2
    assert "not an nnseg run folder (no checkpoint_*.pt)" in _one_line_error(capsys)
    assert cli.main(["predict", "-o", str(tmp_path / "out")]) == 2
    assert "needs -i IN and -m MODEL" in _one_line_error(capsys)
    assert cli.main([*base, "--step-size", "0"]) == 2
    assert "InferenceSettings: tile_step_size must be a number in (0, 1]; got 0.0" in _one_line_error(capsys)
    assert cli.main([*base, "--device", "gpu"]) == 2
    assert "InferenceSettings: device must be a torch device" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_nnunet_numerics_are_recorded_in_the_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nnseg.inference._parts import PartManifest

    model = make_nnunet_model_folder(tmp_path / "model", seed=1)
    write_images(tmp_path / "in", num_cases=1, shape=(5, 16, 16))
    out = tmp_path / "out"
    assert cli.main(["predict", "-i", str(tmp_path / "in"), "-o", str(out), "-m", str(model), "--nnunet-numerics",
                     "--no-tta"]) == 0  # fmt: skip
    (manifest,) = PartManifest.load_all(out)
    assert manifest.settings["accumulator"] == "nnunet_float16"
    assert manifest.settings["mirror_axes"] == []
    assert manifest.owned_case_ids == ("case_0",)


def test_cascade_models_predict_both_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cascade_helpers import make_nnseg_cascade_runs, make_nnunet_cascade

    cascade, lowres = make_nnunet_cascade(tmp_path / "results", seed=1)
    write_images(tmp_path / "in", num_cases=2, shape=(5, 16, 16))
    out = str(tmp_path / "out")
    base = ["predict", "-i", str(tmp_path / "in"), "--no-tta"]
    assert cli.main([*base, "-o", out, "-m", str(cascade), "--num-parts", "2", "--part-id", "0"]) == 0
    assert cli.main(["predict", "--status", "-o", out]) == 1
    report = capsys.readouterr().out
    assert "previous stage: part 0 of 2: complete, 1/1 case(s) done" in report
    assert "part 1 of 2: not started, 0/1 case(s) done; missing: case_1" in report
    assert cli.main([*base, "-o", out, "-m", str(cascade), "--num-parts", "2", "--part-id", "1"]) == 0
    assert cli.main(["predict", "--status", "-o", out]) == 0
    given = [*base, "-o", str(tmp_path / "given"), "-m", str(cascade), "--prev-stage-predictions"]
    assert cli.main([*given, str(tmp_path / "out" / ".previous_stage")]) == 0
    (tmp_path / "few").mkdir()
    assert cli.main([*given, str(tmp_path / "few")]) == 2
    assert "lacks the previous-stage segmentation of 2 case(s): case_0, case_1" in _one_line_error(capsys)
    runs, _ = make_nnseg_cascade_runs(tmp_path / "runs", seed=3)
    assert cli.main([*base, "-o", str(tmp_path / "run_out"), "-m", str(runs)]) == 0
    assert sorted(p.name for p in (tmp_path / "run_out" / ".previous_stage").glob("case_*")) == [
        "case_0.nii.gz",
        "case_1.nii.gz",
    ]
    lone, _ = make_nnseg_cascade_runs(tmp_path / "lone", seed=3, run="other", with_lowres=False)
    assert cli.main([*base, "-o", str(tmp_path / "lone_out"), "-m", str(lone)]) == 2
    assert "nnUNetPlans__3d_lowres__other/fold_0 does not exist; expected the run folders" in _one_line_error(capsys)
    shutil.rmtree(lowres)
    assert cli.main([*base, "-o", str(tmp_path / "out3"), "-m", str(cascade)]) == 2
    assert "but its 3d_lowres model folder" in _one_line_error(capsys)
    assert not (tmp_path / "out3").exists()
