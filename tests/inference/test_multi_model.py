"""``nnseg predict -m A -m B``: each member predicted with probabilities, then ensembled; equal to doing it by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from inference_helpers import make_nnunet_model_folder, write_images

from nnseg.cli import main as cli


def _files(folder: Path, ending: str = ".nii.gz") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob(f"*{ending}"))}


def test_multi_model_prediction_equals_members_then_nnseg_ensemble(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model_a = make_nnunet_model_folder(tmp_path / "a", seed=1)
    model_b = make_nnunet_model_folder(tmp_path / "b", seed=4)
    source = tmp_path / "in"
    ids = write_images(source, num_cases=3, shape=(6, 17, 16))
    out = tmp_path / "out"
    base = ["predict", "-i", str(source), "-o", str(out), "-m", str(model_a), "-m", str(model_b), "--no-tta",
            "--save-probabilities", "--num-parts", "2"]  # fmt: skip
    assert cli.main([*base, "--part-id", "1"]) == 0
    assert "part 1 of 2: 1 case(s) ensembled from 2 models" in capsys.readouterr().out
    assert cli.main(["predict", "--status", "-o", str(out)]) == 1
    report = capsys.readouterr().out
    assert "member 0: part 0 of 2: not started, 0/2 case(s) done; missing: case_0, case_2" in report
    assert f"{out}: ensemble 1/3 case(s); missing: case_0, case_2: INCOMPLETE" in report
    assert cli.main([*base, "--part-id", "0"]) == 0
    assert cli.main([*base, "--part-id", "0"]) == 0  # a rerun redoes nothing
    assert "part 0 of 2: 0 case(s) ensembled" in capsys.readouterr().out
    assert cli.main(["predict", "--status", "-o", str(out)]) == 0
    assert f"{out}: ensemble 3/3 case(s): COMPLETE" in capsys.readouterr().out

    by_hand = []
    for name, model in (("pa", model_a), ("pb", model_b)):
        assert cli.main(["predict", "-i", str(source), "-o", str(tmp_path / name), "-m", str(model), "--no-tta",
                         "--save-probabilities"]) == 0  # fmt: skip
        by_hand.append(str(tmp_path / name))
    assert (
        cli.main(
            [
                "ensemble",
                "-i",
                *by_hand,
                "-o",
                str(tmp_path / "ens"),
                "--save-probabilities",
                "-d",
                str(model_a / "dataset.json"),
            ]
        )
        == 0
    )
    assert sorted(_files(out)) == [f"{c}.nii.gz" for c in ids]
    assert _files(out) == _files(tmp_path / "ens")
    assert _files(out, ".npz") == _files(tmp_path / "ens", ".npz")
    assert _files(out / ".members" / "0", ".npz") == _files(tmp_path / "pa", ".npz")


def test_members_of_other_labels_plans_or_the_same_model_twice_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_a = make_nnunet_model_folder(tmp_path / "a", seed=1)
    other_labels = make_nnunet_model_folder(tmp_path / "labels", seed=2, labels={"background": 0, "liver": 1})
    other_plans = make_nnunet_model_folder(tmp_path / "plans", seed=3)
    plans = json.loads((other_plans / "plans.json").read_text())
    (other_plans / "plans.json").write_text(json.dumps({**plans, "plans_name": "nnUNetResEncPlans"}))
    write_images(tmp_path / "in", num_cases=1, shape=(6, 17, 16))
    out = tmp_path / "out"
    base = ["predict", "-i", str(tmp_path / "in"), "-o", str(out), "--no-tta", "-m", str(model_a), "-m"]
    assert cli.main([*base, str(other_labels)]) == 2
    assert (f"EnsembleError: -m {model_a} and -m {other_labels} cannot be ensembled: their labels differ "
            "({'background': 0, 'liver': 1, 'tumour': 2} vs {'background': 0, 'liver': 1}); expected configurations "
            "of one dataset trained with the same plans and labels.") in capsys.readouterr().err  # fmt: skip
    assert cli.main([*base, str(other_plans)]) == 2
    assert ("their plans (dataset, plans name) differ (('Dataset001_Tiny', 'nnUNetPlans') vs ('Dataset001_Tiny', "
            "'nnUNetResEncPlans'))") in capsys.readouterr().err  # fmt: skip
    assert cli.main([*base, str(model_a)]) == 2
    assert f"-m {model_a} and -m {model_a} are the same model; give each member once." in capsys.readouterr().err
    assert not out.exists()  # nothing written
