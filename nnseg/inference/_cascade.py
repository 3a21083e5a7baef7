"""Cascade prediction: the ``3d_lowres`` stage, then ``3d_cascade_fullres`` on the image plus its one-hot output.

Where the previous (lowres) stage of a cascade model is found:

* **nnU-Net model folder** ``<Trainer>__<Plans>__3d_cascade_fullres``: the sibling folder
  ``<Trainer>__<Plans>__3d_lowres`` (the configuration named by the plan's ``previous_stage``) beside it;
* **nnseg run** ``runs/<plans>__3d_cascade_fullres__<run>/fold_<k>`` (or the run root with ``fold_<k>/``):
  the same path with ``<plans>__3d_lowres__<run>``, i.e. the lowres run of the same plans and run name, and
  the same folds.

A folder run of a cascade (:func:`predict_cascade_folder`) predicts, for the cases its part owns, the lowres
stage into the hidden prediction folder ``<output>/.previous_stage/`` (resumable and checksummed like any
prediction folder), then the full-resolution stage into ``<output>``; a rerun resumes both. Given a folder of
previous-stage segmentations instead (``--prev-stage-predictions DIR``), the part's files are checked before
anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnseg.dataset import DatasetSpec
from nnseg.errors import CasesFailedError, CheckpointError, PredictionError
from nnseg.inference._export import ExportedPrediction
from nnseg.inference._folder import _scan_inputs, predict_folder
from nnseg.inference._model import TrainedModel
from nnseg.inference._parts import PredictionStatus
from nnseg.inference._previous_stage import (
    PREPROCESSED_ENDINGS,
    PreviousStageReader,
    check_previous_stage_labels,
    find_previous_stage_file,
)
from nnseg.io import read_segmentation
from nnseg.preprocessing import PreprocessedCase
from nnseg.sharding import Shard

if TYPE_CHECKING:
    from nnseg.inference._predictor import Predictor

__all__ = ["PREVIOUS_STAGE_DIR", "check_stages", "nnunet_previous_stage_folder", "predict_cascade_folder",
           "run_previous_stage_dirs"]  # fmt: skip

PREVIOUS_STAGE_DIR = ".previous_stage"
"""Hidden prediction folder of the previous stage inside a cascade's output folder."""


def nnunet_previous_stage_folder(folder: Path, model: TrainedModel) -> Path:
    """The lowres sibling of an nnU-Net cascade model folder (``<Trainer>__<Plans>__<previous_stage>``).

    Raises:
        CheckpointError: If the folder is not named ``..__<configuration>`` or the sibling does not exist.
    """
    plan, suffix = model.plan, f"__{model.plan.name}"
    previous = str(plan.previous_stage)
    name = folder.resolve().name
    expected = folder.resolve().parent / (name[: -len(suffix)] + f"__{previous}" if name.endswith(suffix) else
                                          f"<Trainer>__{plan.plans_name}__{previous}")  # fmt: skip
    if not name.endswith(suffix) or not expected.is_dir():
        raise CheckpointError(
            f"{folder} is a cascade model ({plan.name!r} needs the {previous!r} stage first) but its {previous} model "
            f"folder {expected} does not exist; expected it beside the cascade folder, as nnU-Net trains them. Copy or "
            f"unzip the {previous} model folder there, or give the previous-stage segmentations "
            "(--prev-stage-predictions DIR)."
        )
    return expected


def run_previous_stage_dirs(run_dirs: Sequence[Path], model: TrainedModel) -> list[Path]:
    """The lowres run folders of nnseg cascade run folders: ``<plans>__<config>__<run>`` -> ``<plans>__<previous>__<run>``.

    Raises:
        CheckpointError: If a run folder is not inside a ``<plans>__<config>__<run>`` folder, or its lowres
            twin does not exist.
    """
    plan = model.plan
    marker, previous = f"{plan.plans_name}__{plan.name}__", f"{plan.plans_name}__{plan.previous_stage}__"
    found = []
    for run in run_dirs:
        parts = run.resolve().parts
        index = next((i for i in range(len(parts) - 1, -1, -1) if parts[i].startswith(marker)), None)
        twin = (
            Path(*parts[:index], previous + parts[index][len(marker) :], *parts[index + 1 :])
            if index is not None
            else None
        )
        if twin is None or not twin.is_dir():
            raise CheckpointError(
                f"{run} is a cascade run ({plan.name!r} needs the {plan.previous_stage!r} stage first) but its "
                f"{plan.previous_stage} run {twin or previous + '<run>'} does not exist; expected the run folders "
                f"runs/{marker}<run> and runs/{previous}<run> side by side. Train the {plan.previous_stage} "
                "configuration with the same run name, or give the previous-stage segmentations "
                "(--prev-stage-predictions DIR)."
            )
        found.append(twin)
    return found


def check_stages(model: TrainedModel, previous: TrainedModel) -> None:
    """Refuse a previous-stage model that is not the cascade's: other plans, configuration or labels.

    Raises:
        CheckpointError: Naming both models' sources and what differs.
    """
    plan, low = model.plan, previous.plan
    where = f"cascade {model.source[0] if model.source else plan.name} and previous stage " \
            f"{previous.source[0] if previous.source else low.name}"  # fmt: skip
    if plan.previous_stage is None:
        raise CheckpointError(f"{where}: configuration {plan.name!r} is not a cascade stage (no previous_stage); "
                              "predict it without a previous stage.")  # fmt: skip
    facts = (
        ("configuration", plan.previous_stage, low.name),
        ("plans name", plan.plans_name, low.plans_name),
        ("dataset", plan.dataset_name, low.dataset_name),
        ("labels", model.spec.labels, previous.spec.labels),
    )
    for what, expected, got in facts:
        if expected != got:
            raise CheckpointError(
                f"{where}: the previous stage's {what} is {got!r}, expected {expected!r}; the lowres model was trained "
                "with other plans or another dataset. Use the 3d_lowres model of the same plans (the sibling folder)."
            )


def _check_given_folder(folder: Path, case_ids: Sequence[str], spec: DatasetSpec) -> None:
    """Check a folder of previous-stage segmentations for ``case_ids`` before anything is predicted."""
    if not folder.is_dir():
        raise PredictionError(f"--prev-stage-predictions {folder} does not exist or is not a folder; check the path.")
    missing = [case for case in case_ids if find_previous_stage_file(folder, case, spec.file_ending) is None]
    if missing:
        raise PredictionError(
            f"--prev-stage-predictions {folder} lacks the previous-stage segmentation of {len(missing)} case(s): "
            f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}; expected <case>{spec.file_ending} (the "
            "3d_lowres predictions) or <case>.b2nd. Predict the 3d_lowres stage for them, or leave "
            "--prev-stage-predictions out. Nothing was predicted."
        )
    for case in case_ids:
        path = find_previous_stage_file(folder, case, spec.file_ending)
        if path is not None and not path.name.endswith(PREPROCESSED_ENDINGS):
            check_previous_stage_labels(read_segmentation(path)[0], spec, f"{path} (nothing was predicted)")


@dataclass
class _CascadeStage:
    """The full-resolution stage as a folder run sees it: images plus the one-hot previous stage."""

    predictor: Predictor
    reader: PreviousStageReader
    source: dict[str, Any]
    model: TrainedModel

    @property
    def spec(self) -> DatasetSpec:
        return self.predictor.spec

    @property
    def preprocessor(self) -> PreviousStageReader:
        return self.reader

    def predict_logits(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.predictor.predict_logits(data)

    def export(
        self, logits: torch.Tensor, case: PreprocessedCase, *, with_probabilities: bool = False
    ) -> ExportedPrediction:
        return self.predictor.export(logits, case, with_probabilities=with_probabilities)

    def manifest_settings(self) -> dict[str, Any]:
        return {**self.predictor.manifest_settings(), "previous_stage": self.source}


def predict_cascade_folder(
    predictor: Predictor, input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, shard: Shard,
    overwrite: bool, save_probabilities: bool, num_workers: int, progress: bool,
    previous_stage_dir: str | os.PathLike[str] | None = None,
) -> PredictionStatus:  # fmt: skip
    """Predict a folder with a cascade: the previous stage (or ``previous_stage_dir``), then the cascade stage.

    Raises:
        PredictionError: If there is no previous stage to run and no ``previous_stage_dir``, or that folder lacks
            a case of the part or holds labels the dataset does not have (before anything is written).
        CasesFailedError: At the end, naming the stage each failed case failed in (the others are written).
    """
    source, target = Path(input_dir), Path(output_dir)
    failures: dict[str, str] = {}
    if previous_stage_dir is not None:
        folder = Path(previous_stage_dir)
        cases, broken = _scan_inputs(source, predictor.spec)
        owned = set(shard.select(sorted([c.case_id for c in cases] + list(broken))))
        _check_given_folder(folder, [c.case_id for c in cases if c.case_id in owned], predictor.spec)
        stage_source: dict[str, Any] = {"folder": str(folder.resolve())}
    elif predictor.previous_stage is not None:
        previous = predictor.previous_stage
        folder = target / PREVIOUS_STAGE_DIR
        stage_source = {"configuration": previous.plan.name, "model_id": previous.model.identity()}
        try:
            previous.predict_folder(source, folder, shard=shard, overwrite=overwrite, save_probabilities=False,
                                    num_workers=num_workers, progress=progress)  # fmt: skip
        except CasesFailedError as err:  # the others go on to the next stage; reported at the end
            failures.update({case: f"{previous.plan.name} stage: {reason}" for case, reason in err.failures.items()})
    else:
        raise PredictionError(
            f"{predictor.plan.name!r} is a cascade stage and needs the {predictor.plan.previous_stage!r} "
            "predictions first; give previous_stage_dir (--prev-stage-predictions DIR) or build the predictor with "
            "previous_stage=Predictor(<the lowres model>)."
        )
    stage = _CascadeStage(predictor, PreviousStageReader(predictor.preprocessor, folder), stage_source, predictor.model)
    try:
        status = predict_folder(stage, source, target, shard=shard, overwrite=overwrite,
                                save_probabilities=save_probabilities, num_workers=num_workers, progress=progress)  # fmt: skip
    except CasesFailedError as err:
        failures = {**err.failures, **failures}  # a case the first stage failed: its first reason
    else:
        if not failures:
            return status
    listed = "; ".join(f"{case}: {reason}" for case, reason in sorted(failures.items()))
    raise CasesFailedError(f"{len(failures)} case(s) failed ({shard}): {listed}. Fix those inputs and rerun to "
                           "predict them (finished cases of both stages are kept).", failures)  # fmt: skip
