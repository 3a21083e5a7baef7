"""Determining postprocessing on a folder of predictions, and applying it to folders (sharded, resumable).

The rule (nnU-Net v2's): first try keeping only the largest connected component of all foreground labels
together; keep that step if the foreground-mean Dice rises strictly (``>``) and no label's mean Dice falls
(``<``, NaN means ignored). Then, when there is more than one label or region, try each one in
``dataset.json`` order on top of the steps kept so far; keep it if that label's mean Dice rises strictly. A
label whose mean Dice is NaN (empty in every reference and prediction) makes the foreground mean NaN, so the
first step is then never kept, and neither is that label's own step (a comparison with NaN is false).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from nnseg.dataset import DatasetSpec
from nnseg.errors import EvaluationError, PostprocessingError
from nnseg.evaluation import EvaluationSummary
from nnseg.evaluation._folder import pair_case_files
from nnseg.evaluation._metrics import LabelOrRegion, case_metrics, evaluated_labels, label_key
from nnseg.evaluation._summary import CaseEvaluation
from nnseg.io import read_segmentation, write_segmentation
from nnseg.postprocessing._steps import PostprocessingStep, Trial, apply_steps, steps_key
from nnseg.sharding import Shard

if TYPE_CHECKING:
    from nnseg.postprocessing._postprocessing import Postprocessing

__all__ = ["apply_postprocessing_folder", "decide", "segmentation_files"]

logger = logging.getLogger(__name__)


def segmentation_files(folder: Path, ending: str, what: str) -> dict[str, Path]:
    """``{file name: path}`` of the ``*<ending>`` files of ``folder`` (hidden temporaries skipped).

    Raises:
        PostprocessingError: If the folder does not exist.
    """
    if not folder.is_dir():
        raise PostprocessingError(f"{what} folder {folder} does not exist or is not a folder; check the path.")
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_file() and p.name.endswith(ending) and not p.name.startswith(".")}  # fmt: skip


def _pairs(pred_dir: Path, ref_dir: Path, ending: str, allow_missing: bool) -> list[tuple[Path, Path]]:
    try:
        return pair_case_files(pred_dir, ref_dir, ending, allow_missing=allow_missing)
    except EvaluationError as err:
        raise PostprocessingError(f"cannot determine postprocessing: {err}") from err


def _evaluate_case(
    reference_file: Path, prediction_file: Path, steps: tuple[PostprocessingStep, ...],
    labels: tuple[LabelOrRegion, ...], ignore_label: int | None,
) -> CaseEvaluation:  # fmt: skip
    reference, _ = read_segmentation(reference_file)
    prediction, _ = read_segmentation(prediction_file)
    prediction = apply_steps(steps, prediction)
    metrics = case_metrics(
        reference, prediction, labels, ignore_label=ignore_label, where=f"case {prediction_file.name}"
    )
    return CaseEvaluation(str(reference_file), str(prediction_file), metrics)


def _evaluate(pairs: list[tuple[Path, Path]], steps: tuple[PostprocessingStep, ...], spec: DatasetSpec,
              num_workers: int) -> EvaluationSummary:  # fmt: skip
    labels = evaluated_labels(spec)
    n = len(pairs)
    args = ([r for r, _ in pairs], [p for _, p in pairs], [steps] * n, [labels] * n, [spec.ignore_label] * n)
    if num_workers <= 1 or n <= 1:
        cases = list(map(_evaluate_case, *args))
    else:
        with ProcessPoolExecutor(min(num_workers, n), mp_context=multiprocessing.get_context("spawn")) as pool:
            cases = list(pool.map(_evaluate_case, *args))
    return EvaluationSummary(tuple(label_key(label) for label in labels), tuple(cases))


def _dice(summary: EvaluationSummary) -> dict[str, float]:
    return {"foreground_mean": summary.mean_dice, **{key: values["Dice"] for key, values in summary.mean.items()}}


def _no_label_worse(before: EvaluationSummary, after: EvaluationSummary) -> bool:
    old, new = before.mean, after.mean
    return not any(new[key]["Dice"] < old[key]["Dice"] for key in new)  # NaN compares False: ignored


def decide(
    pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str], spec: DatasetSpec,
    out_dir: str | os.PathLike[str], *, allow_missing: bool = False, num_workers: int = 1,
) -> tuple[tuple[PostprocessingStep, ...], tuple[Trial, ...], dict[str, float], dict[str, float]]:  # fmt: skip
    """Apply the rule on ``pred_dir``; write the postprocessed folder and its summary into ``out_dir``.

    Returns:
        The accepted steps, every trial, and the Dice before and after (see
        :func:`~nnseg.postprocessing.determine_postprocessing`, which wraps them in a ``Postprocessing``).
    """
    if Path(out_dir).resolve() in (Path(pred_dir).resolve(), Path(ref_dir).resolve()):
        raise PostprocessingError(f"the output folder {out_dir} is the prediction or reference folder; the "
                                  "postprocessed files would replace them. Choose another output folder.")  # fmt: skip
    pairs = _pairs(Path(pred_dir), Path(ref_dir), spec.file_ending, allow_missing)
    baseline = _evaluate(pairs, (), spec, num_workers)
    accepted: tuple[PostprocessingStep, ...] = ()
    trials: list[Trial] = []
    whole = PostprocessingStep(spec.foreground_labels)
    candidate = _evaluate(pairs, (whole,), spec, num_workers)
    keep = candidate.mean_dice > baseline.mean_dice and _no_label_worse(baseline, candidate)
    trials.append(Trial(whole.labels, "foreground_mean", baseline.mean_dice, candidate.mean_dice, keep))
    current = candidate if keep else baseline
    accepted = (whole,) if keep else ()
    labels = evaluated_labels(spec)
    if len(labels) > 1:
        for label in labels:
            step, key = PostprocessingStep((label,)), label_key(label)
            candidate = _evaluate(pairs, (*accepted, step), spec, num_workers)
            before, after = current.mean[key]["Dice"], candidate.mean[key]["Dice"]
            keep = after > before
            trials.append(Trial(step.labels, key, before, after, keep))
            if keep:
                accepted, current = (*accepted, step), candidate
    logger.info("postprocessing: %s; foreground-mean Dice %.5f -> %.5f", steps_key(accepted),
                baseline.mean_dice, current.mean_dice)  # fmt: skip
    _write_folder(accepted, [p for _, p in pairs], Path(out_dir), overwrite=True)
    current.save(Path(out_dir) / "summary.json")
    return accepted, tuple(trials), _dice(baseline), _dice(current)


def _write_folder(steps: Sequence[PostprocessingStep], files: Sequence[Path], out_dir: Path, *,
                  overwrite: bool) -> list[Path]:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in files:
        target = out_dir / source.name
        if target.is_file() and not overwrite:
            continue
        segmentation, geometry = read_segmentation(source)
        write_segmentation(apply_steps(steps, segmentation), target, geometry)
        written.append(target)
    return written


def apply_postprocessing_folder(
    pp: Postprocessing, input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], spec: DatasetSpec,
    *, shard: Shard | None = None, overwrite: bool = False,
) -> list[Path]:  # fmt: skip
    """Apply ``pp`` to the label maps of ``input_dir`` that ``shard`` owns; write them into ``output_dir``.

    Every output is written atomically; an existing output is complete and is skipped unless ``overwrite``,
    so a killed run is continued by running it again.

    Returns:
        The files written by this call.

    Raises:
        PostprocessingError: If ``pp`` belongs to other labels, the input folder is missing or empty, or the
            output folder is the input folder. Nothing is written then.
        ImageIOError: If a file cannot be read or written.
    """
    pp.check_dataset(spec)
    source, target = Path(input_dir), Path(output_dir)
    if source.resolve() == target.resolve():
        raise PostprocessingError(f"the output folder {target} is the input folder; choose another output folder.")
    files = segmentation_files(source, spec.file_ending, "input")
    if not files:
        raise PostprocessingError(f"no <case>{spec.file_ending} label maps in {source}; check the folder and the "
                                  "dataset's file ending.")  # fmt: skip
    owned = (shard or Shard.whole()).select(files)
    return _write_folder(pp.steps, [files[name] for name in owned], target, overwrite=overwrite)
