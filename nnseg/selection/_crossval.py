"""Cross-validation results: gather the folds' validation outputs of one run into one folder and evaluate it.

``RUN_ROOT/crossval_results_folds_0_1_2_3_4/`` (nnU-Net's name) receives every ``fold_<k>/validation/<case>``
label map, with ``<case>.npz`` / ``<case>.json`` probabilities where the fold saved them, a copy of the
dataset's ``dataset.json`` and the ``summary.json`` against the reference labels (nnU-Net's layout, through
:func:`nnseg.evaluation.evaluate_folder`). Files are copied atomically and only when missing or different,
so a rerun after the folds changed updates exactly what changed and a rerun with nothing new reuses the
summary. Nothing is deleted.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnseg._atomic import atomic_write
from nnseg.dataset import DatasetSpec
from nnseg.errors import SelectionError
from nnseg.evaluation import EvaluationSummary, evaluate_folder

__all__ = ["CrossValidation", "SelectionError", "accumulate_crossval", "crossval_folder_name", "run_spec"]

logger = logging.getLogger(__name__)
FINAL_CHECKPOINT = "checkpoint_final.pt"


def crossval_folder_name(folds: Sequence[int]) -> str:
    """nnU-Net's folder name, e.g. ``crossval_results_folds_0_1_2_3_4``."""
    return "crossval_results_folds_" + "_".join(str(f) for f in folds)


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """The gathered validation outputs of one run.

    Args:
        run_root: The run folder holding ``fold_<k>/``.
        folds: The folds gathered.
        folder: The cross-validation folder.
        summary: Its evaluation (``summary.json``).
        has_probabilities: Whether every case has saved probabilities (needed for ensembles).
    """

    run_root: Path
    folds: tuple[int, ...]
    folder: Path
    summary: EvaluationSummary
    has_probabilities: bool

    @property
    def score(self) -> float:
        """Foreground-mean Dice, the number nnU-Net ranks configurations by."""
        return self.summary.mean_dice


def _read_run_json(fold_dir: Path) -> dict:  # type: ignore[type-arg]
    path = fold_dir / "run.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SelectionError(
            f"{path} cannot be read ({err}); expected the run description nnseg train writes."
        ) from err
    if not isinstance(data, dict) or "dataset_spec" not in data:
        raise SelectionError(f"{path} is not an nnseg run description (no 'dataset_spec'); check the run folder.")
    return data


def _check_fold(run_root: Path, fold: int) -> Path:
    fold_dir = run_root / f"fold_{fold}"
    hint = f"train it (nnseg train WORK -c CONFIG -f {fold}) or leave it out with -f"
    if not fold_dir.is_dir():
        raise SelectionError(f"fold {fold} of {run_root} is missing ({fold_dir} does not exist); {hint}.")
    if not (fold_dir / FINAL_CHECKPOINT).is_file():
        raise SelectionError(f"fold {fold} of {run_root} is unfinished (no {FINAL_CHECKPOINT}); {hint}.")
    validation = fold_dir / "validation"
    if not (validation / "summary_preprocessed.json").is_file():
        raise SelectionError(
            f"fold {fold} of {run_root} has no finished validation ({validation}/summary_preprocessed.json is "
            f"missing); rerun `nnseg train` for fold {fold} (it validates a finished run) or leave it out with -f."
        )
    return validation


def run_spec(run_root: Path, folds: Sequence[int]) -> DatasetSpec:
    """The dataset spec recorded in the folds' ``run.json``, checked to be one spec and one plan.

    Raises:
        SelectionError: If a fold is missing or its ``run.json`` differs in labels or plans from the others.
    """
    first: dict | None = None  # type: ignore[type-arg]
    for fold in folds:
        data = _read_run_json(run_root / f"fold_{fold}")
        if first is None:
            first = data
            continue
        for key, what in (("dataset_spec", "dataset labels"), ("plans_hash", "plans")):
            if data.get(key) != first.get(key):
                raise SelectionError(
                    f"fold {fold} of {run_root} was trained with other {what} than fold {folds[0]} ({key} differs in "
                    "run.json); the folds of one cross-validation must share plans and labels. Retrain that fold."
                )
    if first is None:
        raise SelectionError(f"no folds given for {run_root}; pass at least one fold with -f.")
    return DatasetSpec.from_dict(first["dataset_spec"], source=str(run_root / f"fold_{folds[0]}" / "run.json"))


def _gather(run_root: Path, folds: Sequence[int], ending: str) -> dict[str, Path]:
    """Every file to copy, by name; a case in two folds is an error."""
    files: dict[str, Path] = {}
    owner: dict[str, int] = {}
    for fold in folds:
        validation = _check_fold(run_root, fold)
        for path in sorted(validation.iterdir()):
            name = path.name
            if name.startswith(".") or not path.is_file():
                continue
            case = name[: -len(ending)] if name.endswith(ending) else name.rsplit(".", 1)[0]
            if not name.endswith((ending, ".npz")) and not (
                name.endswith(".json") and (validation / f"{case}.npz").is_file()
            ):
                continue
            if case in owner and owner[case] != fold:
                raise SelectionError(
                    f"case {case} is in the validation of fold {owner[case]} and of fold {fold} of {run_root}; a case "
                    "must be validated by exactly one fold. Were the folds trained with different splits?"
                )
            owner[case] = fold
            files[name] = path
    return files


def _copy_if_changed(source: Path, target: Path) -> bool:
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return False
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    return True


def accumulate_crossval(
    run_root: str | os.PathLike[str], reference_dir: str | os.PathLike[str], *, folds: Sequence[int] = (0, 1, 2, 3, 4),
    spec: DatasetSpec | None = None, num_workers: int = 1,
) -> CrossValidation:  # fmt: skip
    """Gather the validation outputs of ``folds`` into ``run_root/crossval_results_folds_...`` and evaluate them.

    Args:
        run_root: The run folder with ``fold_<k>/`` (``WORK/runs/<plans>__<configuration>__<run>``).
        reference_dir: The reference label maps (the raw dataset's ``labelsTr``).
        folds: The folds to gather (nnU-Net: 0 to 4).
        spec: The dataset's labels; default: from the folds' ``run.json``.
        num_workers: Worker processes for the evaluation.

    Returns:
        The :class:`CrossValidation` (folder, summary, whether probabilities are there for every case).

    Raises:
        SelectionError: If a fold is missing, unfinished, trained with other plans or labels, or a case is in
            two folds (nothing is copied then).
        EvaluationError: If a gathered case has no reference.
    """
    root, folds = Path(run_root), tuple(int(f) for f in folds)
    for fold in folds:
        _check_fold(root, fold)
    spec = spec or run_spec(root, folds)
    files = _gather(root, folds, spec.file_ending)
    target = root / crossval_folder_name(folds)
    unknown = (
        sorted(p.name for p in target.glob(f"*{spec.file_ending}") if p.name not in files) if target.is_dir() else []
    )
    if unknown:
        raise SelectionError(
            f"{target} holds {len(unknown)} prediction(s) no fold validated ({', '.join(unknown[:10])}); it was "
            "gathered from other folds. Remove the folder (or those files) and run again."
        )
    changed = [name for name, source in files.items() if _copy_if_changed(source, target / name)]
    if not (target / "dataset.json").is_file():
        spec.save(target / "dataset.json")
    summary_path = target / "summary.json"
    if changed or not summary_path.is_file():
        summary = evaluate_folder(target, reference_dir, spec, allow_missing=True, num_workers=num_workers)
        summary.save(summary_path)
    else:
        summary = EvaluationSummary.load(summary_path)
    cases = [name[: -len(spec.file_ending)] for name in files if name.endswith(spec.file_ending)]
    with_probabilities = bool(cases) and all(f"{case}.npz" in files and f"{case}.json" in files for case in cases)
    logger.info("%s: %d case(s) from folds %s, %d file(s) updated", target, len(cases), list(folds), len(changed))
    return CrossValidation(root, folds, target, summary, with_probabilities)
