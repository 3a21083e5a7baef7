"""find-best: the choice (highest score, ties to the first candidate, NaN never wins), the files, reuse, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from selection_helpers import make_run, make_work

from nnseg.cli import main as cli
from nnseg.selection import Candidate, SelectionError, choose_best, find_best


def _c(name: str, score: float) -> Candidate:
    return Candidate(name, tuple(name.split("+")), score, Path(name))


def test_choice_is_the_highest_score() -> None:
    assert choose_best([_c("2d", 0.7), _c("3d", 0.8), _c("2d+3d", 0.79)]).name == "3d"


def test_exact_tie_goes_to_the_first_candidate() -> None:
    assert choose_best([_c("2d", 0.8), _c("3d", 0.8), _c("2d+3d", 0.8)]).name == "2d"
    assert choose_best([_c("2d", 0.7), _c("3d", 0.8), _c("2d+3d", 0.8)]).name == "3d"


def test_nan_never_wins_and_all_nan_is_an_error() -> None:
    assert choose_best([_c("2d", math.nan), _c("3d", 0.1)]).name == "3d"
    with pytest.raises(SelectionError, match="no candidate has a foreground-mean Dice"):
        choose_best([_c("2d", math.nan)])


def test_find_best_writes_choice_instructions_and_reuses_work(tmp_path: Path) -> None:
    work = make_work(tmp_path)
    make_run(work, "2d", quality=0.45, seed=1)
    make_run(work, "3d_fullres", quality=0.5, seed=2)
    best = find_best(work.root, ["2d", "3d_fullres"], folds=(0, 1))
    names = [c.name for c in best.candidates]
    assert names == ["2d", "3d_fullres", "ensemble___2d___3d_fullres"]
    assert best.winner.score == max(c.score for c in best.candidates)
    saved = json.loads((work.root / "best.json").read_text())
    assert saved["winner"] == best.winner.name
    assert [c["members"] for c in saved["candidates"]][2] == ["2d", "3d_fullres"]
    assert (work.root / "postprocessing.json").is_file()
    text = (work.root / "inference_instructions.txt").read_text()
    assert "nnseg postprocess apply" in text
    assert ("nnseg ensemble" in text) == (len(best.winner.members) > 1)
    ensemble_dir = work.root / "ensembles" / "nnUNetPlans__2d__nnseg___nnUNetPlans__3d_fullres__nnseg___0_1"
    assert (ensemble_dir / "summary.json").is_file()
    pp_mtime = (work.root / "postprocessing.json").stat().st_mtime_ns
    again = find_best(work.root, ["2d", "3d_fullres"], folds=(0, 1))
    assert again.winner.name == best.winner.name
    assert (work.root / "postprocessing.json").stat().st_mtime_ns == pp_mtime


def test_missing_configuration_and_missing_probabilities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = make_work(tmp_path)
    make_run(work, "2d", quality=0.5)
    make_run(work, "3d_fullres", quality=0.5, probabilities=False)
    with pytest.raises(SelectionError, match=r"configuration '3d_lowres' was never trained"):
        find_best(work.root, ["2d", "3d_lowres"], folds=(0, 1))
    with pytest.raises(SelectionError, match=r"configuration '3d_fullres' has no saved probabilities"):
        find_best(work.root, ["2d", "3d_fullres"], folds=(0, 1))
    assert cli.main(["find-best", str(work.root), "-c", "2d", "3d_fullres", "-f", "0", "1", "--no-ensembles"]) == 0
    out = capsys.readouterr().out
    assert "<- best" in out
    assert "ensemble" not in out
