"""``evaluate_folder``: compare a folder of predictions with a folder of reference label maps.

Files are paired by name (``<case><file_ending>`` in both folders). Unlike nnU-Net, a reference without a
prediction is an error unless ``allow_missing=True``: a run that silently skipped cases must not report a
Dice computed on the cases that happened to finish.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nnseg.dataset import DatasetSpec
from nnseg.errors import EvaluationError
from nnseg.evaluation._metrics import LabelOrRegion, case_metrics, evaluated_labels, label_key
from nnseg.evaluation._summary import CaseEvaluation, EvaluationSummary
from nnseg.io import read_segmentation

__all__ = ["EvaluationError", "evaluate_case_files", "evaluate_folder"]

MAX_LISTED = 10


def _list(folder: Path, ending: str, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise EvaluationError(f"{what} folder {folder} does not exist or is not a folder; check the path.")
    return {
        path.name: path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name.endswith(ending) and not path.name.startswith(".")
    }


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def pair_case_files(pred_dir: Path, ref_dir: Path, ending: str, *, allow_missing: bool) -> list[tuple[Path, Path]]:
    """``(reference, prediction)`` file pairs of the same name, sorted by name.

    Raises:
        EvaluationError: If a folder is missing, a prediction has no reference, there are no predictions, or
            (without ``allow_missing``) a reference has no prediction.
    """
    predictions = _list(pred_dir, ending, "prediction")
    references = _list(ref_dir, ending, "reference")
    orphans = sorted(set(predictions) - set(references))
    if orphans:
        raise EvaluationError(
            f"{len(orphans)} prediction(s) in {pred_dir} have no reference in {ref_dir}: {_names(orphans)}; "
            "expected a reference label map of the same file name for every prediction."
        )
    missing = sorted(set(references) - set(predictions))
    if missing and not allow_missing:
        raise EvaluationError(
            f"{len(missing)} of {len(references)} reference(s) in {ref_dir} have no prediction in {pred_dir}: "
            f"{_names(missing)}; finish the prediction run (see `nnseg predict --status`), or pass "
            "allow_missing=True (--allow-missing) to evaluate only the cases present."
        )
    if not predictions:
        raise EvaluationError(
            f"no prediction files ending in {ending!r} in {pred_dir}; expected <case>{ending} files. "
            "Check the folder and the file ending."
        )
    return [(references[name], predictions[name]) for name in sorted(predictions)]


def evaluate_case_files(
    reference_file: Path, prediction_file: Path, labels: Sequence[LabelOrRegion], ignore_label: int | None
) -> CaseEvaluation:
    """Read one reference / prediction pair and compute its metrics.

    Raises:
        ImageIOError: If a file cannot be read.
        ConfigError: If the two label maps differ in shape.
    """
    reference, _ = read_segmentation(reference_file)
    prediction, _ = read_segmentation(prediction_file)
    metrics = case_metrics(
        reference, prediction, labels, ignore_label=ignore_label, where=f"case {prediction_file.name}"
    )
    return CaseEvaluation(str(reference_file), str(prediction_file), metrics)


def evaluate_folder(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    spec: DatasetSpec,
    *,
    file_ending: str | None = None,
    allow_missing: bool = False,
    num_workers: int = 1,
) -> EvaluationSummary:
    """Dice, IoU and confusion counts of every prediction against its reference, per label or region.

    Args:
        pred_dir: Folder of predicted label maps ``<case><file_ending>``.
        ref_dir: Folder of reference label maps with the same names (e.g. ``labelsTs``).
        spec: The dataset's labels: foreground labels are evaluated, or its regions for region-based data;
            reference voxels equal to the ignore label are left out.
        file_ending: File ending to pair; defaults to ``spec.file_ending``.
        allow_missing: Evaluate only the references that have a prediction instead of raising.
        num_workers: Worker processes reading and comparing files (1: in this process).

    Returns:
        The :class:`EvaluationSummary`; ``summary.save(path)`` writes nnU-Net's ``summary.json``.

    Raises:
        EvaluationError: If a folder is missing, a prediction has no reference, a reference has no prediction
            (unless ``allow_missing``), or there is nothing to evaluate.
        ImageIOError: If a file cannot be read.
        ConfigError: If a prediction's shape differs from its reference's.

    Example:
        >>> summary = evaluate_folder("work/pred", "raw/labelsTs", ds.spec)
        >>> print(f"mean Dice {summary.mean_dice:.4f}")
    """
    ending = file_ending or spec.file_ending
    pairs = pair_case_files(Path(pred_dir), Path(ref_dir), ending, allow_missing=allow_missing)
    labels = evaluated_labels(spec)
    args = ([r for r, _ in pairs], [p for _, p in pairs], [labels] * len(pairs), [spec.ignore_label] * len(pairs))
    if num_workers <= 1 or len(pairs) <= 1:
        cases = list(map(evaluate_case_files, *args))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(num_workers, len(pairs)), mp_context=context) as pool:
            cases = list(pool.map(evaluate_case_files, *args))
    return EvaluationSummary(tuple(label_key(label) for label in labels), tuple(cases))
