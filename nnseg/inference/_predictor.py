"""``Predictor``: preprocess, sliding-window predict (fold ensemble), export back to the source geometry.

The per-case core is :meth:`Predictor.predict_array` (arrays in, label map out); :meth:`Predictor.predict_case`
reads and writes files; :meth:`Predictor.predict_folder` adds sharding, resume, progress and overlap of
preprocessing / export with the network's work (see :mod:`nnseg.inference._folder`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnseg.dataset import Case, DatasetSpec
from nnseg.dataset._case import parse_image_file_name
from nnseg.errors import ConfigError, PredictionError
from nnseg.inference._cascade import (
    check_stages,
    nnunet_previous_stage_folder,
    predict_cascade_folder,
    run_previous_stage_dirs,
)
from nnseg.inference._export import ExportedPrediction, export_logits, write_outputs
from nnseg.inference._folder import predict_folder
from nnseg.inference._model import TrainedModel
from nnseg.inference._optimize import optimize_for_inference
from nnseg.inference._parts import PredictionStatus, prediction_status
from nnseg.inference._previous_stage import preprocess_with_previous
from nnseg.inference._settings import InferenceSettings, settings_from_legacy
from nnseg.inference._sliding_window import predict_logits
from nnseg.io import read_images
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing import PreprocessedCase, Preprocessor
from nnseg.preprocessing._resampling import Resampler, resampler_from_plan
from nnseg.sharding import Shard

__all__ = ["Predictor"]

_OLD_KEYWORDS = {"device", "use_mirroring", "step_size", "use_gaussian", "batch_size", "accumulation_dtype", "amp",
                 "accumulate_on_device", "optimize"}  # fmt: skip


class Predictor:
    """Predict segmentations with a trained model, as nnU-Net v2's predictor does.

    Args:
        model: Plan, labels and fold weights (see :meth:`from_run`, :meth:`from_nnunet_model_folder`).
        settings: Tile step, mirroring, accumulator, tile batch size, devices, probabilities (default:
            ``InferenceSettings()``, nnU-Net's choices with float32 blending). Nothing is moved to the device
            until the first prediction.
        previous_stage: For a cascade stage (``plan.previous_stage`` set, e.g. ``3d_cascade_fullres``): the
            predictor of its previous stage (``3d_lowres``), run first on each case. Without it, a cascade
            predicts only with given previous-stage segmentations (``predict_folder(previous_stage_dir=...)``).
        **deprecated: The keyword arguments of nnseg 0.x (``device``, ``use_mirroring``, ``step_size``,
            ``use_gaussian``, ``batch_size``, ``accumulation_dtype``, ``amp``, ``accumulate_on_device``,
            ``optimize``); they still work for one release, with a DeprecationWarning.

    Example:
        >>> predictor = Predictor.from_run("work/runs/fold_0", settings=InferenceSettings(device="cuda:0"))
        >>> predictor.predict_folder("raw/imagesTs", "work/pred", shard=Shard(0, 5))
    """

    def __init__(self, model: TrainedModel, *, settings: InferenceSettings | None = None,
                 previous_stage: Predictor | None = None, **deprecated: Any) -> None:  # fmt: skip
        if previous_stage is not None:
            check_stages(model, previous_stage.model)
        self.model: TrainedModel = model
        self.previous_stage = previous_stage
        self.settings = settings_from_legacy("Predictor", settings, deprecated, allowed=_OLD_KEYWORDS)
        self._network: torch.nn.Module | None = None
        self._runner: torch.nn.Module | None = None
        self._loaded_fold = -1
        self._preprocessor: Preprocessor | None = None
        self._resampler: Resampler | None = None

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_run(
        cls, run_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, checkpoint: str = "final",
        plans: Plans | None = None, settings: InferenceSettings | None = None, **deprecated: Any,
    ) -> Predictor:  # fmt: skip
        """Predictor for nnseg run folder(s); several folders form a fold ensemble (logits averaged).

        ``checkpoint`` is ``"final"``, ``"best"`` or ``"latest"``; ``settings`` and the deprecated keywords
        are those of :class:`Predictor`.
        """
        settings = settings_from_legacy("Predictor.from_run", settings, deprecated, allowed=_OLD_KEYWORDS)
        model = TrainedModel.from_run(run_dirs, checkpoint=checkpoint, plans=plans)
        if model.plan.previous_stage is None:
            return cls(model, settings=settings)
        folders = [Path(run_dirs)] if isinstance(run_dirs, str | os.PathLike) else [Path(d) for d in run_dirs]
        previous = cls.from_run(run_previous_stage_dirs(folders, model), checkpoint=checkpoint, plans=plans,
                                settings=settings)  # fmt: skip
        return cls(model, settings=settings, previous_stage=previous)

    @classmethod
    def from_nnunet_model_folder(
        cls, folder: str | os.PathLike[str], *, folds: Sequence[int | str] | None = None,
        checkpoint_name: str = "checkpoint_final.pth", settings: InferenceSettings | None = None, **deprecated: Any,
    ) -> Predictor:  # fmt: skip
        """Predictor for an nnU-Net v2 trained model folder (``plans.json``, ``dataset.json``, ``fold_k/``).

        A ``3d_cascade_fullres`` folder gets its ``3d_lowres`` sibling folder as ``previous_stage`` (same
        ``folds`` and ``checkpoint_name``). ``settings`` and the deprecated keywords are those of :class:`Predictor`.
        """
        settings = settings_from_legacy("Predictor.from_nnunet_model_folder", settings, deprecated,
                                        allowed=_OLD_KEYWORDS)  # fmt: skip
        model = TrainedModel.from_nnunet_model_folder(folder, folds=folds, checkpoint_name=checkpoint_name)
        if model.plan.previous_stage is None:
            return cls(model, settings=settings)
        previous = cls.from_nnunet_model_folder(nnunet_previous_stage_folder(Path(folder), model), folds=folds,
                                                checkpoint_name=checkpoint_name, settings=settings)  # fmt: skip
        return cls(model, settings=settings, previous_stage=previous)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def plan(self) -> ConfigurationPlan:
        """The configuration plan of the model."""
        return self.model.plan

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's channels and labels."""
        return self.model.spec

    @property
    def device(self) -> torch.device:
        """Where the network runs (``settings.device``)."""
        return self.settings.torch_device

    @property
    def mirror_axes(self) -> tuple[int, ...]:
        """Axes mirrored at test time (empty without mirroring)."""
        return self.settings.resolved_mirror_axes(self.model.mirror_axes)

    def manifest_settings(self) -> dict[str, Any]:
        """The settings that change the outputs, with the model's facts (recorded in each part's manifest)."""
        return {
            **self.settings.manifest_json(self.model.mirror_axes), "file_ending": self.spec.file_ending,
            "configuration": self.plan.name, "plans_name": self.plan.plans_name, "model_source": list(self.model.source),
        }  # fmt: skip

    @property
    def preprocessor(self) -> Preprocessor:
        """The plan's :class:`~nnseg.preprocessing.Preprocessor`."""
        if self._preprocessor is None:
            self._preprocessor = Preprocessor(self.plan, self.spec)
        return self._preprocessor

    def _network_for_fold(self, fold: int) -> torch.nn.Module:
        if self._network is None or self._runner is None:
            self._network = self.model.build_network().to(self.device)
            optimize = self.settings.optimize
            self._runner = (
                optimize_for_inference(self._network, self.plan.ndim, self.device) if optimize else self._network
            )
            self._loaded_fold = 0
        if fold != self._loaded_fold:
            self._network.load_state_dict(self.model.weights[fold])
            self._loaded_fold = fold
        return self._runner

    # ------------------------------------------------------------------------------------------ per case
    def predict_logits(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Fold-averaged sliding-window logits of one preprocessed ``(c, z, y, x)`` array (float32, CPU)."""
        total: torch.Tensor | None = None
        settings = dataclasses.replace(self.settings, mirror_axes=self.mirror_axes)  # the model's axes resolved
        for fold in range(len(self.model.weights)):
            logits = predict_logits(self._network_for_fold(fold), data, self.plan.patch_size,
                                    self.spec.num_segmentation_heads, settings)  # fmt: skip
            total = logits if total is None else total + logits
        if total is None:  # invariant: a TrainedModel has at least one fold
            raise ConfigError("the model has no folds")
        return total / len(self.model.weights) if len(self.model.weights) > 1 else total

    def export(
        self, logits: torch.Tensor, case: PreprocessedCase, *, with_probabilities: bool = False
    ) -> ExportedPrediction:
        """Map logits of ``case`` back to its source grid (see :func:`~nnseg.inference.export_logits`)."""
        if self._resampler is None:
            self._resampler = resampler_from_plan(
                self.plan.resampling_fn_probabilities,
                self.plan.resampling_fn_probabilities_kwargs,
                where=f"configuration {self.plan.name!r}, resampling_fn_probabilities",
            )
        dtype = np.float16 if self.settings.accumulator_prototype.dtype == torch.float16 else np.float32
        return export_logits(logits, case.properties, self.spec, resampler=self._resampler,
                             with_probabilities=with_probabilities, resampling_dtype=dtype)  # fmt: skip

    def _preprocess(self, images: np.ndarray, spacing: Sequence[float], previous: np.ndarray | None,
                    **context: Any) -> PreprocessedCase:  # fmt: skip
        if self.plan.previous_stage is None:
            return self.preprocessor.preprocess(images, spacing, **context)
        if previous is None:
            if self.previous_stage is None:
                raise PredictionError(
                    f"{self.plan.name!r} is a cascade stage: give previous_segmentation (the {self.plan.previous_stage} "
                    "prediction of the images), or build the predictor with previous_stage=<its predictor>."
                )  # fmt: skip
            previous = self.previous_stage.predict_array(images, spacing).segmentation
        return preprocess_with_previous(
            self.preprocessor, images, spacing, previous, where="previous_segmentation", **context
        )

    def predict_array(
        self, images: np.ndarray, spacing: Sequence[float], *, with_probabilities: bool = False,
        previous_segmentation: np.ndarray | None = None,
    ) -> ExportedPrediction:  # fmt: skip
        """Segment one case given as a ``(c, z, y, x)`` array with its spacing (array order).

        A cascade stage predicts ``previous_segmentation`` (a label map on the grid of ``images``) with its
        ``previous_stage`` first when it is not given.

        Returns:
            The label map (and probabilities) on the grid of ``images``.
        """
        case = self._preprocess(np.asarray(images), spacing, previous_segmentation)
        return self.export(self.predict_logits(case.data), case, with_probabilities=with_probabilities)

    def predict_case(
        self, case: Case | Sequence[str | os.PathLike[str]], output_file: str | os.PathLike[str] | None = None, *,
        with_probabilities: bool = False,
    ) -> ExportedPrediction:  # fmt: skip
        """Segment one case read from its channel files; write it (atomically) when ``output_file`` is given.

        With ``with_probabilities`` and an ``output_file``, ``<case>.npz`` (key ``probabilities``) and
        ``<case>.json`` (the case properties) are written next to it, before the label map.
        """
        if not isinstance(case, Case):
            paths = tuple(Path(p) for p in case)
            parsed = parse_image_file_name(paths[0].name, self.spec.file_ending) if paths else None
            case = Case(parsed[0] if parsed else "case", paths)
        if self.plan.previous_stage is None:
            preprocessed = self.preprocessor.preprocess_case(case)
        else:
            images, geometry = read_images(case.image_paths)
            preprocessed = self._preprocess(images, geometry.spacing, None, geometry=geometry, case_id=case.case_id)
        result = self.export(
            self.predict_logits(preprocessed.data), preprocessed, with_probabilities=with_probabilities
        )
        if output_file is not None:
            write_outputs(result, preprocessed, Path(output_file))
        return result

    def predict_folder(
        self, input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, shard: Shard | None = None,
        overwrite: bool = False, save_probabilities: bool | None = None, num_workers: int = 1, progress: bool = True,
        previous_stage_dir: str | os.PathLike[str] | None = None,
    ) -> PredictionStatus:  # fmt: skip
        """Predict every case of ``input_dir`` owned by ``shard`` into ``output_dir`` (resumable, atomic).

        ``save_probabilities`` None takes ``settings.save_probabilities``. See
        :mod:`nnseg.inference._folder` for the rules; returns the run's status afterwards. A cascade stage
        first predicts its previous stage into ``<output_dir>/.previous_stage/``, or reads the previous-stage
        segmentations from ``previous_stage_dir`` (see :mod:`nnseg.inference._cascade`).
        """
        probabilities = self.settings.save_probabilities if save_probabilities is None else save_probabilities
        if self.plan.previous_stage is not None:
            return predict_cascade_folder(self, input_dir, output_dir, shard=shard or Shard.whole(), overwrite=overwrite,
                                          save_probabilities=probabilities, num_workers=num_workers, progress=progress,
                                          previous_stage_dir=previous_stage_dir)  # fmt: skip
        if previous_stage_dir is not None:
            raise PredictionError(
                f"previous_stage_dir is for cascade stages; {self.plan.name!r} has no previous stage."
            )
        return predict_folder(self, input_dir, output_dir, shard=shard or Shard.whole(), overwrite=overwrite,
                              save_probabilities=probabilities, num_workers=num_workers, progress=progress)  # fmt: skip

    @staticmethod
    def status(output_dir: str | os.PathLike[str]) -> PredictionStatus:
        """Per part, the cases done and missing in a prediction folder (see :func:`prediction_status`)."""
        return prediction_status(output_dir)
