"""find-best with the cascade: a configuration like any other, whose instructions predict its lowres stage first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from selection_helpers import make_run, make_work

from nnseg.cli import main as cli
from nnseg.selection import find_best
from nnseg.selection._find_best import instructions
from nnseg.workspace import Workspace


def _cascade_run(work: Workspace, *, quality: float) -> Path:
    """A hand-made 3d_cascade_fullres run whose run.json names 3d_lowres as its previous stage (as training writes)."""
    run_root = make_run(work, "3d_cascade_fullres", quality=quality, seed=3)
    for fold_dir in run_root.glob("fold_*"):
        data = json.loads((fold_dir / "run.json").read_text())
        data["plan"] = {"previous_stage": "3d_lowres", "nnseg_configuration_name": "3d_cascade_fullres"}
        (fold_dir / "run.json").write_text(json.dumps(data))
    return run_root


def _predict_lines(work: Workspace) -> list[str]:
    return [line for line in (work.root / "inference_instructions.txt").read_text().splitlines()
            if line.startswith("nnseg predict")]  # fmt: skip


def test_cascade_winner_predicts_its_lowres_stage_first(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    lowres = make_run(work, "3d_lowres", quality=0.3, seed=1)
    cascade = _cascade_run(work, quality=0.9)
    best = find_best(work.root, ["3d_lowres", "3d_cascade_fullres"], folds=(0, 1))
    assert [c.name for c in best.candidates] == ["3d_lowres", "3d_cascade_fullres",
                                                 "ensemble___3d_lowres___3d_cascade_fullres"]  # fmt: skip
    assert best.winner.name == "3d_cascade_fullres"
    assert (cascade / "crossval_results_folds_0_1" / "summary.json").is_file()
    assert _predict_lines(work) == [
        f"nnseg predict -i INPUT_FOLDER -o OUTPUT_FOLDER_3d_lowres -m {lowres} -f 0 1",
        f"nnseg predict -i INPUT_FOLDER -o OUTPUT_FOLDER -m {cascade} -f 0 1 "
        "--prev-stage-predictions OUTPUT_FOLDER_3d_lowres",
    ]


def test_ensemble_with_its_own_lowres_stage_predicts_the_lowres_once(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    lowres = make_run(work, "3d_lowres", quality=0.42, seed=11)
    cascade = _cascade_run(work, quality=0.42)
    best = find_best(work.root, ["3d_cascade_fullres", "3d_lowres"], folds=(0, 1))
    ensemble = next(c for c in best.candidates if len(c.members) == 2)
    assert ensemble.members == ("3d_cascade_fullres", "3d_lowres")
    assert (ensemble.folder / "summary.json").is_file()  # the pairwise ensemble in probability space
    # whichever won, the instructions an ensemble winner would get
    text = instructions(dataclasses.replace(best, winner=ensemble), work, (0, 1), "nnUNetPlans", "nnseg")
    predicts = [line for line in text.splitlines() if line.startswith("nnseg predict")]
    assert predicts == [
        f"nnseg predict -i INPUT_FOLDER -o OUTPUT_FOLDER_3d_lowres -m {lowres} -f 0 1 --save-probabilities",
        f"nnseg predict -i INPUT_FOLDER -o OUTPUT_FOLDER_3d_cascade_fullres -m {cascade} -f 0 1 --save-probabilities "
        "--prev-stage-predictions OUTPUT_FOLDER_3d_lowres",
    ]
    assert (
        "nnseg ensemble -i OUTPUT_FOLDER_3d_cascade_fullres OUTPUT_FOLDER_3d_lowres -o OUTPUT_FOLDER_ensemble" in text
    )


def test_cli_find_best_with_the_cascade(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    make_run(work, "3d_lowres", quality=0.3, seed=1)
    _cascade_run(work, quality=0.9)
    assert cli.main(["find-best", str(work.root), "-c", "3d_lowres", "3d_cascade_fullres", "-f", "0", "1"]) == 0
    assert json.loads((work.root / "best.json").read_text())["winner"] == "3d_cascade_fullres"
    assert "--prev-stage-predictions OUTPUT_FOLDER_3d_lowres" in (work.root / "inference_instructions.txt").read_text()
