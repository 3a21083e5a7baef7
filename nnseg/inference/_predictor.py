"""``Predictor``: preprocess, sliding-window predict (fold ensemble), export back to the source geometry.

The per-case core is :meth:`Predictor.predict_array` (arrays in, label map out); :meth:`Predictor.predict_case`
reads and writes files; :meth:`Predictor.predict_folder` adds sharding, resume, progress and overlap of
preprocessing / export with the network's work (see :mod:`nnseg.inference._folder`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nnseg._atomic import atomic_write, atomic_write_json
from nnseg.dataset import Case, DatasetSpec
from nnseg.dataset._case import parse_image_file_name
from nnseg.errors import ConfigError
from nnseg.inference._export import ExportedPrediction, export_logits
from nnseg.inference._model import TrainedModel
from nnseg.inference._optimize import optimize_for_inference
from nnseg.inference._sliding_window import predict_logits
from nnseg.io import ImageGeometry, write_segmentation
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing import PreprocessedCase, Preprocessor
from nnseg.preprocessing._resampling import Resampler, resampler_from_plan
from nnseg.sharding import Shard

if TYPE_CHECKING:
    from nnseg.inference._parts import PredictionStatus

__all__ = ["Predictor"]


class Predictor:
    """Predict segmentations with a trained model, as nnU-Net v2's predictor does.

    Args:
        model: Plan, labels and fold weights (see :meth:`from_run`, :meth:`from_nnunet_model_folder`).
        device: Where the network runs (``"cpu"``, ``"cuda:0"``...); nothing is moved until the first prediction.
        use_mirroring: Mirror test-time augmentation over the model's mirror axes (nnU-Net: on).
        step_size: Tile step as a fraction of the patch (nnU-Net: 0.5).
        use_gaussian: Gaussian importance weighting of tiles (nnU-Net: on).
        batch_size: Network inputs (tiles and mirrored copies) per forward pass, halved on out-of-memory; None:
            4; 1: as nnU-Net (needed for bit-identical float16 results).
        accumulation_dtype: float32 (default, no overflow) or float16 (nnU-Net's logits bit for bit).
        amp: Autocast for the network; None means on CUDA only.
        accumulate_on_device: Keep the accumulators on the device; None means on CUDA only (CPU fallback on OOM).
        optimize: Run an equivalent, faster network (instance norm as group norm, channels-last on the CPU); the
            logits agree to float rounding. Turn off (with ``accumulation_dtype=torch.float16, batch_size=1``)
            for segmentations bit-identical to nnU-Net's.

    Example:
        >>> predictor = Predictor.from_run("work/runs/fold_0", device="cuda:0")
        >>> predictor.predict_folder("raw/imagesTs", "work/pred", shard=Shard(0, 5))
    """

    def __init__(
        self, model: TrainedModel, *, device: str | torch.device = "cpu", use_mirroring: bool = True,
        step_size: float = 0.5, use_gaussian: bool = True, batch_size: int | None = None,
        accumulation_dtype: torch.dtype = torch.float32, amp: bool | None = None,
        accumulate_on_device: bool | None = None, optimize: bool = True,
    ) -> None:  # fmt: skip
        if not 0 < step_size <= 1:
            raise ConfigError(f"Predictor: step_size must be in (0, 1]; got {step_size}. nnU-Net uses 0.5.")
        if accumulation_dtype not in (torch.float32, torch.float16, torch.float64):
            raise ConfigError(f"Predictor: accumulation_dtype must be a float dtype; got {accumulation_dtype}.")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ConfigError(f"Predictor: device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda:0'.") from err
        self.model = model
        self.use_mirroring, self.step_size, self.use_gaussian = use_mirroring, step_size, use_gaussian
        self.batch_size, self.accumulation_dtype, self.amp = batch_size, accumulation_dtype, amp
        self.accumulate_on_device, self.optimize = accumulate_on_device, optimize
        self._network: torch.nn.Module | None = None
        self._runner: torch.nn.Module | None = None
        self._loaded_fold = -1
        self._preprocessor: Preprocessor | None = None
        self._resampler: Resampler | None = None

    # ------------------------------------------------------------------------------------------ constructors
    @classmethod
    def from_run(
        cls, run_dirs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, checkpoint: str = "final",
        plans: Plans | None = None, **options: Any,
    ) -> Predictor:  # fmt: skip
        """Predictor for nnseg run folder(s); several folders form a fold ensemble (logits averaged).

        ``options`` are the keyword arguments of :class:`Predictor`; ``checkpoint`` is ``"final"``, ``"best"``
        or ``"latest"``.
        """
        return cls(TrainedModel.from_run(run_dirs, checkpoint=checkpoint, plans=plans), **options)

    @classmethod
    def from_nnunet_model_folder(
        cls, folder: str | os.PathLike[str], *, folds: Sequence[int | str] | None = None,
        checkpoint_name: str = "checkpoint_final.pth", **options: Any,
    ) -> Predictor:  # fmt: skip
        """Predictor for an nnU-Net v2 trained model folder (``plans.json``, ``dataset.json``, ``fold_k/``)."""
        return cls(TrainedModel.from_nnunet_model_folder(folder, folds=folds, checkpoint_name=checkpoint_name), **options)

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
    def mirror_axes(self) -> tuple[int, ...]:
        """Axes mirrored at test time (empty without mirroring)."""
        return self.model.mirror_axes if self.use_mirroring else ()

    def settings(self) -> dict[str, Any]:
        """The settings that change the outputs (recorded in each part's manifest)."""
        return {
            "mirror_axes": list(self.mirror_axes), "step_size": self.step_size, "use_gaussian": self.use_gaussian,
            "accumulation_dtype": str(self.accumulation_dtype), "file_ending": self.spec.file_ending,
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
            self._runner = optimize_for_inference(self._network, self.plan.ndim, self.device) if self.optimize else self._network
            self._loaded_fold = 0
        if fold != self._loaded_fold:
            self._network.load_state_dict(self.model.weights[fold])
            self._loaded_fold = fold
        return self._runner

    # ------------------------------------------------------------------------------------------ per case
    def predict_logits(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Fold-averaged sliding-window logits of one preprocessed ``(c, z, y, x)`` array (float32, CPU)."""
        total: torch.Tensor | None = None
        for fold in range(len(self.model.weights)):
            logits = predict_logits(
                self._network_for_fold(fold), data, self.plan.patch_size, self.spec.num_segmentation_heads,
                step_size=self.step_size, mirror_axes=self.mirror_axes, use_gaussian=self.use_gaussian,
                device=self.device, accumulation_dtype=self.accumulation_dtype, amp=self.amp,
                batch_size=self.batch_size, accumulate_on_device=self.accumulate_on_device,
            )  # fmt: skip
            total = logits if total is None else total + logits
        if total is None:  # invariant: a TrainedModel has at least one fold
            raise ConfigError("the model has no folds")
        return total / len(self.model.weights) if len(self.model.weights) > 1 else total

    def export(self, logits: torch.Tensor, case: PreprocessedCase, *, with_probabilities: bool = False) -> ExportedPrediction:
        """Map logits of ``case`` back to its source grid (see :func:`~nnseg.inference.export_logits`)."""
        if self._resampler is None:
            self._resampler = resampler_from_plan(
                self.plan.resampling_fn_probabilities, self.plan.resampling_fn_probabilities_kwargs,
                where=f"configuration {self.plan.name!r}, resampling_fn_probabilities",
            )
        dtype = np.float16 if self.accumulation_dtype == torch.float16 else np.float32
        return export_logits(logits, case.properties, self.spec, resampler=self._resampler,
                             with_probabilities=with_probabilities, resampling_dtype=dtype)  # fmt: skip

    def predict_array(
        self, images: np.ndarray, spacing: Sequence[float], *, with_probabilities: bool = False
    ) -> ExportedPrediction:
        """Segment one case given as a ``(c, z, y, x)`` array with its spacing (array order).

        Returns:
            The label map (and probabilities) on the grid of ``images``.
        """
        case = self.preprocessor.preprocess(images, spacing)
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
        preprocessed = self.preprocessor.preprocess_case(case)
        result = self.export(self.predict_logits(preprocessed.data), preprocessed, with_probabilities=with_probabilities)
        if output_file is not None:
            write_outputs(result, preprocessed, Path(output_file))
        return result

    def predict_folder(
        self, input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], *, shard: Shard | None = None,
        overwrite: bool = False, save_probabilities: bool = False, num_workers: int = 1, progress: bool = True,
    ) -> PredictionStatus:  # fmt: skip
        """Predict every case of ``input_dir`` owned by ``shard`` into ``output_dir`` (resumable, atomic).

        See :func:`nnseg.inference.predict_folder` for the rules; returns the run's status afterwards.
        """
        from nnseg.inference._folder import predict_folder

        return predict_folder(self, input_dir, output_dir, shard=shard or Shard.whole(), overwrite=overwrite,
                              save_probabilities=save_probabilities, num_workers=num_workers, progress=progress)  # fmt: skip

    @staticmethod
    def status(output_dir: str | os.PathLike[str]) -> PredictionStatus:
        """Per part, the cases done and missing in a prediction folder (see :func:`prediction_status`)."""
        from nnseg.inference._parts import prediction_status

        return prediction_status(output_dir)


def _write_npz(path: Path, probabilities: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probabilities=probabilities)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))


def write_outputs(result: ExportedPrediction, case: PreprocessedCase, output_file: Path) -> None:
    """Write a case's label map (and probabilities + properties), each file atomically, the label map last."""
    geometry = case.properties.geometry or ImageGeometry.identity(case.properties.spacing)
    if result.probabilities is not None:
        stem = output_file.name[: -len(_ending(output_file))]
        _write_npz(output_file.with_name(f"{stem}.npz"), result.probabilities)
        atomic_write_json(output_file.with_name(f"{stem}.json"), case.properties.to_json())
    write_segmentation(result.segmentation, output_file, geometry)


def _ending(path: Path) -> str:
    name = path.name
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(ending):
            return ending
    return path.suffix
