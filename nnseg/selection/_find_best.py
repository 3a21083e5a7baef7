"""``find_best``: choose the final model from cross-validation, as nnU-Net's ``find_best_configuration`` does.

Candidates are each configuration's cross-validation and (unless ``ensembles=False``) every unordered pair of
configurations ensembled in probability space. The score is the foreground-mean Dice of each candidate's
``summary.json``; the highest wins, and on an exact tie the first in candidate order (single configurations in
the given order, then pairs ``(i, j)`` with ``i < j``). A NaN score never wins. Postprocessing is then
determined on the winner's folder. Results land in the work folder::

    WORK/ensembles/<run_a>___<run_b>___<folds>/    pairwise ensembles of the cross-validations
    WORK/best.json                                 candidates, scores, winner, postprocessing file
    WORK/postprocessing.json                       the winner's postprocessing
    WORK/inference_instructions.txt                the nnseg commands that reproduce the winner

Reruns reuse what is done: unchanged cross-validations keep their summaries, finished ensemble cases are
skipped, and the postprocessing is kept when the winner and its score are unchanged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json, atomic_write_text
from nnseg.dataset import DatasetSpec
from nnseg.evaluation import EvaluationSummary, evaluate_folder
from nnseg.inference._ensemble import ensemble_folders
from nnseg.postprocessing import Postprocessing
from nnseg.selection._crossval import CrossValidation, SelectionError, accumulate_crossval, run_spec
from nnseg.workspace import Workspace

__all__ = ["BestConfiguration", "Candidate", "choose_best", "find_best"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One configuration or ensemble of configurations, with its cross-validation score.

    Args:
        name: The configuration's name, or ``ensemble___<a>___<b>``.
        members: The configurations it combines.
        score: Foreground-mean Dice of its cross-validation.
        folder: Its cross-validation predictions.
    """

    name: str
    members: tuple[str, ...]
    score: float
    folder: Path

    def to_json(self) -> dict[str, Any]:
        """Return the ``best.json`` entry."""
        return {"name": self.name, "members": list(self.members), "score": self.score, "folder": str(self.folder)}


def choose_best(candidates: Sequence[Candidate]) -> Candidate:
    """The highest score; on an exact tie the earliest candidate; NaN scores never win.

    Raises:
        SelectionError: If there is no candidate with a finite score.
    """
    best: Candidate | None = None
    for candidate in candidates:
        if not math.isnan(candidate.score) and (best is None or candidate.score > best.score):
            best = candidate
    if best is None:
        names = ", ".join(c.name for c in candidates) or "none"
        raise SelectionError(f"no candidate has a foreground-mean Dice to compare (candidates: {names}; all NaN or "
                             "none); check that the cross-validations contain the dataset's labels.")  # fmt: skip
    return best


@dataclass(frozen=True, slots=True)
class BestConfiguration:
    """What :func:`find_best` chose.

    Args:
        candidates: Every candidate, in candidate order.
        winner: The chosen candidate.
        postprocessing: The winner's postprocessing.
        postprocessing_file: Where it is saved.
    """

    candidates: tuple[Candidate, ...]
    winner: Candidate
    postprocessing: Postprocessing
    postprocessing_file: Path

    def ranked(self) -> list[Candidate]:
        """Candidates from best to worst (stable: ties keep candidate order; NaN last)."""
        return sorted(self.candidates, key=lambda c: (math.isnan(c.score), -c.score if not math.isnan(c.score) else 0))

    def table(self) -> list[str]:
        """A ranked table, one line per candidate, the winner marked."""
        width = max(len(c.name) for c in self.candidates)
        lines = [f"{'rank':>4}  {'candidate':<{width}}  foreground-mean Dice"]
        for rank, candidate in enumerate(self.ranked(), start=1):
            mark = "  <- best" if candidate is self.winner else ""
            lines.append(f"{rank:>4}  {candidate.name:<{width}}  {candidate.score:.4f}{mark}")
        return lines

    def to_json(self) -> dict[str, Any]:
        """Return the ``best.json`` content."""
        return {"candidates": [c.to_json() for c in self.candidates], "winner": self.winner.name,
                "postprocessing": str(self.postprocessing_file)}  # fmt: skip


def _crossvalidations(
    workspace: Workspace, configurations: Sequence[str], folds: tuple[int, ...], plans_name: str, run_name: str,
    num_workers: int,
) -> tuple[dict[str, CrossValidation], DatasetSpec]:  # fmt: skip
    reference = workspace.raw_dataset_dir() / "labelsTr"
    results: dict[str, CrossValidation] = {}
    specs: dict[str, DatasetSpec] = {}
    for configuration in configurations:
        run_root = workspace.run_dir(plans_name, configuration, run_name, 0).parent
        if not run_root.is_dir():
            raise SelectionError(
                f"configuration {configuration!r} was never trained ({run_root} does not exist); train its folds "
                f"(nnseg train {workspace.root} -c {configuration} -f FOLD) or leave it out of -c."
            )
        results[configuration] = accumulate_crossval(run_root, reference, folds=folds, num_workers=num_workers)
        specs[configuration] = run_spec(run_root, folds)
    if not results:
        raise SelectionError("find_best needs at least one configuration; pass them with -c.")
    first, *others = list(specs)
    for other in others:
        if specs[other].labels != specs[first].labels:
            raise SelectionError(f"configurations {first!r} and {other!r} were trained on different labels "
                                 f"({dict(specs[first].labels)} vs {dict(specs[other].labels)}); compare runs of one "
                                 "dataset.")  # fmt: skip
    return results, specs[first]


def _ensemble(workspace: Workspace, a: CrossValidation, b: CrossValidation, spec: DatasetSpec, num_workers: int,
              names: tuple[str, str]) -> Candidate:  # fmt: skip
    for cv, name in ((a, names[0]), (b, names[1])):
        if not cv.has_probabilities:
            raise SelectionError(
                f"configuration {name!r} has no saved probabilities for every validation case ({cv.folder}); ensembles "
                "need them. Validate its folds with probabilities saved, or pass --no-ensembles."
            )
    folds = "_".join(str(f) for f in a.folds)
    folder = workspace.root / "ensembles" / f"{a.run_root.name}___{b.run_root.name}___{folds}"
    written = ensemble_folders([a.folder, b.folder], folder, spec)
    summary_path = folder / "summary.json"
    if written or not summary_path.is_file():
        summary = evaluate_folder(folder, workspace.raw_dataset_dir() / "labelsTr", spec, allow_missing=True,
                                  num_workers=num_workers)  # fmt: skip
        summary.save(summary_path)
    else:
        summary = EvaluationSummary.load(summary_path)
    return Candidate(f"ensemble___{names[0]}___{names[1]}", names, summary.mean_dice, folder)


def _previous_choice(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def find_best(
    work: str | os.PathLike[str], configurations: Sequence[str], *, folds: Sequence[int] = (0, 1, 2, 3, 4),
    ensembles: bool = True, plans_name: str = "nnUNetPlans", run_name: str = "nnseg", num_workers: int = 1,
) -> BestConfiguration:  # fmt: skip
    """Rank configurations and their pairwise ensembles on cross-validation, pick the best, decide postprocessing.

    Args:
        work: The work folder (``workspace.json`` names the raw dataset whose ``labelsTr`` are the references).
        configurations: Configuration names, e.g. ``("2d", "3d_fullres")``; the order breaks ties.
        folds: The folds every configuration was trained on.
        ensembles: Also evaluate every pair of configurations ensembled (needs saved probabilities).
        plans_name: The plans the runs used.
        run_name: The runs' name (``nnseg train --run-name``).
        num_workers: Worker processes for the evaluations.

    Returns:
        The :class:`BestConfiguration`; ``best.json``, ``postprocessing.json`` and
        ``inference_instructions.txt`` are written into ``work``.

    Raises:
        SelectionError: If a configuration was never trained, a fold is missing or unfinished, the
            configurations differ in labels, or an ensemble lacks probabilities.
    """
    workspace, folds = Workspace(work), tuple(int(f) for f in folds)
    if len(set(configurations)) != len(configurations):
        raise SelectionError(f"configurations {list(configurations)} list one twice; list each once.")
    results, spec = _crossvalidations(workspace, configurations, folds, plans_name, run_name, num_workers)
    candidates = [Candidate(name, (name,), cv.score, cv.folder) for name, cv in results.items()]
    if ensembles:
        names = list(results)
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                candidates.append(
                    _ensemble(workspace, results[first], results[second], spec, num_workers, (first, second))
                )
    winner = choose_best(candidates)
    pp_file = workspace.root / "postprocessing.json"
    best_file = workspace.root / "best.json"
    previous = _previous_choice(best_file)
    same = previous is not None and previous.get("candidates") == [c.to_json() for c in candidates]
    if same and pp_file.is_file() and (winner.folder / "postprocessed").is_dir():
        postprocessing = Postprocessing.load(pp_file)
    else:
        postprocessing = Postprocessing.determine(winner.folder, workspace.raw_dataset_dir() / "labelsTr", spec,
                                                  winner.folder / "postprocessed", allow_missing=True,
                                                  num_workers=num_workers)  # fmt: skip
        postprocessing.save(pp_file)
    best = BestConfiguration(tuple(candidates), winner, postprocessing, pp_file)
    atomic_write_json(best_file, best.to_json())
    atomic_write_text(workspace.root / "inference_instructions.txt",
                      instructions(best, workspace, folds, plans_name, run_name))  # fmt: skip
    return best


def instructions(best: BestConfiguration, workspace: Workspace, folds: tuple[int, ...], plans_name: str,
                 run_name: str) -> str:  # fmt: skip
    """The shell commands that reproduce the winner on new images (INPUT_FOLDER, OUTPUT_FOLDER placeholders).

    A cascade member (a run whose plan names a ``previous_stage``) is preceded by the prediction of its
    previous stage, which it then reads through ``--prev-stage-predictions`` (nnU-Net's instructions do the
    same); a previous stage that is itself a member of the winning ensemble is predicted once.
    """
    winner, root = best.winner, workspace.root
    fold_args = " ".join(str(f) for f in folds)
    ensemble = len(winner.members) > 1
    lines = [f"# nnseg find-best chose {winner.name} (cross-validation foreground-mean Dice {winner.score:.4f})", ""]

    def output(configuration: str) -> str:
        return f"OUTPUT_FOLDER_{configuration}" if ensemble or configuration not in winner.members else "OUTPUT_FOLDER"

    def predict(configuration: str, extra: str = "") -> None:
        run_root = workspace.run_dir(plans_name, configuration, run_name, 0).parent
        probabilities = " --save-probabilities" if ensemble and configuration in winner.members else ""
        lines.append(f"nnseg predict -i INPUT_FOLDER -o {output(configuration)} -m {run_root} -f {fold_args}"
                     f"{probabilities}{extra}")  # fmt: skip
        done.add(configuration)

    done: set[str] = set()
    for member in winner.members:
        previous = _previous_stage(workspace.run_dir(plans_name, member, run_name, 0).parent, folds)
        if previous is not None and previous not in done:
            predict(previous)
        if member not in done:
            predict(member, f" --prev-stage-predictions {output(previous)}" if previous is not None else "")
    outputs = [output(member) for member in winner.members]
    final = outputs[0]
    if ensemble:
        lines.append(f"nnseg ensemble -i {' '.join(outputs)} -o OUTPUT_FOLDER_ensemble -d {root / 'dataset.json'}")
        final = "OUTPUT_FOLDER_ensemble"
    lines.append(f"nnseg postprocess apply -i {final} -o OUTPUT_FOLDER_PP --pp {best.postprocessing_file} "
                 f"-d {root / 'dataset.json'}")  # fmt: skip
    return "\n".join(lines) + "\n"


def _previous_stage(run_root: Path, folds: tuple[int, ...]) -> str | None:
    """The ``previous_stage`` of the plan a run trained with (from its first fold's ``run.json``), if any."""
    try:
        plan = json.loads((run_root / f"fold_{folds[0]}" / "run.json").read_text())["plan"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # hand-made or foreign runs: treated as plain configurations
    previous = plan.get("previous_stage") if isinstance(plan, dict) else None
    return previous if isinstance(previous, str) and previous else None
