"""Full-case validation at the end of training: sliding-window prediction of the fold's validation cases.

Each validation case is read from the store, predicted with :func:`nnseg.inference.predict_logits` (Gaussian
blending, step 0.5, mirroring as in training), mapped back to the source geometry by the predictor's own
export (:func:`nnseg.inference.export_logits` with the plan's ``resampling_fn_probabilities``: resample the
logits, then arg-max or sigmoid and region painting, as nnU-Net) and written as
``run_dir/validation/<case><file_ending>`` (``.npy`` when the store holds no source geometry) by the
predictor's writer; with ``save_probabilities`` also ``<case>.npz`` (key ``probabilities``) and ``<case>.json``
(its properties), the predictor's format, which ``nnseg ensemble`` and ``nnseg find-best`` read. Every file is
written atomically. Then a summary: :func:`nnseg.evaluation.evaluate_folder` against ``reference_dir`` (the
raw ``labelsTr``) when both exist, else the Dice per class computed in the preprocessed grid against the
store's segmentation (``validation/summary_preprocessed.json``). Under DDP each rank predicts
``val[rank::world]``; rank 0 writes the summary.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnseg._atomic import atomic_write, atomic_write_json
from nnseg.dataset import DatasetSpec
from nnseg.inference import InferenceSettings, export_logits, predict_logits
from nnseg.inference._export import write_outputs
from nnseg.losses import full_resolution
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PROBABILITY_RESAMPLER, PreprocessedCase, PreprocessedStore
from nnseg.preprocessing._resampling import Resampler, resampler_from_plan
from nnseg.training._ddp import DistributedContext
from nnseg.training._pseudo_dice import ConfusionCounts, confusion_counts

__all__ = ["FullResolution", "validate_cases"]

logger = logging.getLogger(__name__)


class FullResolution(nn.Module):
    """Wrap a deep-supervision network so that it returns only its highest-resolution output."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full-resolution output."""
        return full_resolution(self.network(x))


def validate_cases(
    network: nn.Module,
    store: PreprocessedStore,
    case_ids: Sequence[str],
    *,
    patch_size: Sequence[int],
    spec: DatasetSpec,
    out_dir: Path,
    device: torch.device,
    mirror_axes: Sequence[int] | None,
    reference_dir: Path | None = None,
    distributed: DistributedContext | None = None,
    plan: ConfigurationPlan | None = None,
    save_probabilities: bool = False,
    read_case: Callable[[str], PreprocessedCase] | None = None,
    after_case: Callable[[np.ndarray, PreprocessedCase], None] | None = None,
) -> dict[str, Any]:
    """Predict, export and score the validation cases; returns the summary (identical on every rank).

    Args:
        network: The trained network (deep supervision is stripped by :class:`FullResolution`).
        store: The preprocessed store holding the cases.
        case_ids: The fold's validation cases.
        patch_size: The plan's patch size.
        spec: The dataset's labels, regions and file ending.
        out_dir: ``run_dir/validation``.
        device: Where the network runs.
        mirror_axes: Test-time mirroring axes (None: none).
        reference_dir: The raw dataset's ``labelsTr`` for :func:`nnseg.evaluation.evaluate_folder`.
        distributed: The DDP context (None: single process).
        plan: The configuration; its ``resampling_fn_probabilities`` maps the logits back, as the predictor
            does (None: the default probability resampling).
        save_probabilities: Also write ``<case>.npz`` and ``<case>.json`` (nnU-Net's ``--npz``).
        read_case: Reads a case's network input (None: ``store.read_case``; the cascade appends its one-hot).
        after_case: Called with each case's logits and the case (the lowres stage writes the next stage's input).
    """
    ctx = distributed or DistributedContext()
    model = FullResolution(network).eval()
    counts = ConfusionCounts()
    per_case: dict[str, list[float]] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    axes = tuple(mirror_axes or ())
    settings = InferenceSettings(use_mirroring=bool(axes), mirror_axes=axes or None, device=device)
    resampler = _plan_resampler(plan)
    for case_id in list(case_ids)[ctx.rank :: ctx.world_size]:
        case = (read_case or store.read_case)(case_id)
        with torch.no_grad():
            logits = predict_logits(model, case.data, patch_size, spec.num_segmentation_heads, settings)
        if case.seg is not None:
            target = torch.from_numpy(np.maximum(np.asarray(case.seg), 0).astype(np.int64))
            target = _region_target(target, spec) if spec.has_regions else target
            ignore = None if spec.has_regions else spec.ignore_label  # region targets carry no ignore channel here
            one = confusion_counts(logits[None], target[None], regions=spec.has_regions, ignore_label=ignore)
            counts.add(*one)
            per_case[case_id] = ConfusionCounts([int(v) for v in one[0]], [int(v) for v in one[1]],
                                                [int(v) for v in one[2]]).dice_per_class()  # fmt: skip
        _export(logits.numpy(), case, spec, out_dir / case_id, resampler, save_probabilities)
        if after_case is not None:
            after_case(logits.numpy(), case)
    return _summarise(counts, per_case, out_dir, spec, reference_dir, ctx)


def _region_target(labels: torch.Tensor, spec: DatasetSpec) -> torch.Tensor:
    return torch.cat([torch.isin(labels, torch.tensor(region)) for region in spec.foreground_regions]).to(torch.uint8)


def _plan_resampler(plan: ConfigurationPlan | None) -> Resampler:
    if plan is None:
        return PROBABILITY_RESAMPLER
    return resampler_from_plan(plan.resampling_fn_probabilities, plan.resampling_fn_probabilities_kwargs,
                               where=f"configuration {plan.name!r}, resampling_fn_probabilities")  # fmt: skip


def _export(
    logits: np.ndarray, case: PreprocessedCase, spec: DatasetSpec, stem: Path, resampler: Resampler, npz: bool
) -> None:
    # the predictor's export and writer: the same numbers and files
    result = export_logits(logits, case.properties, spec, resampler=resampler, with_probabilities=npz)
    if case.properties.geometry is not None or npz:
        write_outputs(result, case, stem.with_name(stem.name + spec.file_ending))
    if case.properties.geometry is None:
        seg = result.segmentation

        def save(tmp: Path) -> None:
            with tmp.open("wb") as handle:  # a handle: np.save would append ".npy" to the temporary name
                np.save(handle, seg[0])

        atomic_write(stem.with_name(stem.name + ".npy"), save)


def _summarise(
    counts: ConfusionCounts,
    per_case: dict[str, list[float]],
    out_dir: Path,
    spec: DatasetSpec,
    reference_dir: Path | None,
    ctx: DistributedContext,
) -> dict[str, Any]:
    if ctx.is_distributed:
        n = len(spec.foreground_regions) if spec.has_regions else len(spec.foreground_labels)
        tp, fp, fn = (counts.tp or [0] * n), (counts.fp or [0] * n), (counts.fn or [0] * n)
        total = ctx.sum([*tp, *fp, *fn])
        counts = ConfusionCounts([int(v) for v in total[:n]], [int(v) for v in total[n : 2 * n]],
                                 [int(v) for v in total[2 * n :]])  # fmt: skip
        per_case = ctx.merge(per_case)
    summary: dict[str, Any] = {
        "grid": "preprocessed", "mean_dice": counts.mean_dice(), "dice_per_class": counts.dice_per_class(),
        "per_case": per_case,
    }  # fmt: skip
    if not ctx.is_main:
        return summary
    atomic_write_json(out_dir / "summary_preprocessed.json", _json_safe(summary))
    evaluate = _evaluate_folder()
    if evaluate is not None and reference_dir is not None and Path(reference_dir).is_dir():
        result = evaluate(out_dir, Path(reference_dir), spec, allow_missing=True)
        result.save(out_dir / "summary.json")
        summary = {**summary, "grid": "source", "mean_dice": float(result.mean_dice)}
    elif reference_dir is not None:
        logger.warning("validation summary in the preprocessed grid only: nnseg.evaluation is not available "
                       "or %s is not a folder", reference_dir)  # fmt: skip
    return summary


def _evaluate_folder() -> Any:
    try:
        return importlib.import_module("nnseg.evaluation").evaluate_folder
    except (ImportError, AttributeError):
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
