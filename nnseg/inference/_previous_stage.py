"""The cascade's extra input: a previous-stage segmentation as one-hot foreground channels on the next stage's grid.

nnU-Net's ``3d_cascade_fullres`` network sees the image channels followed by one channel per foreground label
of the dataset (background and the ignore label have none; with regions, every label value used by a region):
channel ``num_channels + k`` is 1 where the previous stage predicted ``spec.foreground_labels[k]``, else 0.

Where the segmentation comes from decides how it reaches the full-resolution grid:

* at prediction, the ``3d_lowres`` stage's output is a label map on the **source image** (as written to disk);
  it is preprocessed like a label map of the case (transposed, cropped to the image's nonzero box with -1
  outside the nonzero region, resampled with the plan's ``resampling_fn_seg``) and then one-hot encoded:
  :meth:`PreviousStageReader.preprocess_case` with a ``<case><file_ending>`` file;
* in training, a ``3d_lowres`` fold's validation resamples its **logits** from the lowres preprocessed grid to
  the next stage's preprocessed shape and takes the label map there (:func:`resample_to_next_stage`); nnU-Net
  stores those as ``predicted_next_stage/<next>/<case>.b2nd`` (older: ``.npz`` with key ``seg``), which
  :meth:`PreviousStageReader.preprocess_case` reads as already on the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import DTypeLike

from nnseg.dataset import Case, DatasetSpec
from nnseg.errors import PredictionError
from nnseg.inference._export import paint_regions
from nnseg.io import ImageGeometry, read_images, read_segmentation
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import CaseProperties, PreprocessedCase, Preprocessor
from nnseg.preprocessing._resampling import resampler_from_plan

__all__ = [
    "PREPROCESSED_ENDINGS",
    "PreviousStageReader",
    "append_previous_stage",
    "cascade_input_channels",
    "check_previous_stage_labels",
    "find_previous_stage_file",
    "one_hot_foreground",
    "preprocess_with_previous",
    "resample_to_next_stage",
]

PREPROCESSED_ENDINGS = (".b2nd", ".npz")
"""Endings of previous-stage segmentations already on the next stage's preprocessed grid (nnU-Net's
``predicted_next_stage`` files)."""


def cascade_input_channels(plan: ConfigurationPlan, spec: DatasetSpec) -> int:
    """Input channels of the plan's network: the image channels, plus one per foreground label for a cascade stage."""
    return spec.num_channels + (len(spec.foreground_labels) if plan.previous_stage else 0)


def one_hot_foreground(seg: np.ndarray, labels: Sequence[int], dtype: DTypeLike = np.float32) -> np.ndarray:
    """One channel per label of ``labels``: channel ``k`` is 1 where ``seg == labels[k]``, 0 elsewhere.

    Args:
        seg: A label map of any spatial shape (values outside ``labels``, such as 0 or -1, get no channel).
        labels: The foreground labels, in channel order (``spec.foreground_labels``).
        dtype: dtype of the result (float32 to be stacked onto the image).

    Returns:
        ``(len(labels), *seg.shape)``.
    """
    seg = np.asarray(seg)
    result = np.zeros((len(labels), *seg.shape), dtype=dtype)
    for channel, label in enumerate(labels):
        result[channel][seg == label] = 1
    return result


def append_previous_stage(data: np.ndarray, seg: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """The network input of a cascade stage: ``data`` ``(c, *spatial)`` followed by the one-hot foreground of ``seg``.

    Raises:
        PredictionError: If ``seg`` is not on the grid of ``data``.
    """
    seg = np.asarray(seg)
    seg = seg[0] if seg.ndim == data.ndim else seg
    if seg.shape != data.shape[1:]:
        raise PredictionError(f"previous-stage segmentation of shape {seg.shape} is not on the grid of the image "
                              f"{data.shape[1:]}; expected the same spatial shape.")  # fmt: skip
    return np.concatenate([data, one_hot_foreground(seg, spec.foreground_labels, data.dtype)], axis=0)


def allowed_labels(spec: DatasetSpec) -> set[int]:
    """Values a predicted label map of the dataset may hold (background, labels, region paint values)."""
    return {0, *spec.foreground_labels, *(spec.regions_class_order or ())}


def check_previous_stage_labels(seg: np.ndarray, spec: DatasetSpec, where: str) -> None:
    """Refuse a previous-stage segmentation holding values the dataset's labels do not have.

    Raises:
        PredictionError: Naming ``where``, the unknown values and the dataset's labels.
    """
    unknown = sorted(int(v) for v in np.unique(seg) if int(v) not in allowed_labels(spec) and int(v) != -1)
    if unknown:
        raise PredictionError(
            f"{where}: the previous-stage segmentation holds label(s) {unknown} that {spec.source} does not have "
            f"(labels {sorted(allowed_labels(spec))}); it was predicted for another dataset. Give the 3d_lowres "
            "predictions of this dataset's model (or leave --prev-stage-predictions out to predict them)."
        )


def resample_to_next_stage(
    logits: np.ndarray | torch.Tensor, target_shape: Sequence[int], plan: ConfigurationPlan,
    properties: CaseProperties, spec: DatasetSpec,
) -> np.ndarray:  # fmt: skip
    """The label map a ``3d_lowres`` stage hands to its next stage, from its logits (nnU-Net's validation export).

    The logits are resampled with the lowres plan's ``resampling_fn_probabilities`` to ``target_shape`` (the
    next stage's preprocessed shape of the case; nnU-Net passes the lowres spacing as both the current and the
    new spacing, which only decides whether an axis is resampled separately), then turned into labels: the
    arg-max, or with regions the regions above 0.5 painted in ``regions_class_order``.

    Args:
        logits: ``(num_outputs, *shape_after_resampling)`` of the lowres case.
        target_shape: Spatial shape of the case in the next stage's preprocessed grid.
        plan: The lowres configuration.
        properties: The lowres case's properties (``target_spacing``).
        spec: The dataset's labels.

    Returns:
        ``(*target_shape,)`` label map, uint8 (uint16 with 255 or more foreground labels).
    """
    array = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    resampler = resampler_from_plan(plan.resampling_fn_probabilities, plan.resampling_fn_probabilities_kwargs,
                                    where=f"configuration {plan.name!r}, resampling_fn_probabilities")  # fmt: skip
    spacing = tuple(properties.target_spacing)
    scores = torch.from_numpy(
        np.ascontiguousarray(resampler(array.astype(np.float32), tuple(target_shape), spacing, spacing))
    )
    dtype = np.uint8 if len(spec.foreground_labels) < 255 else np.uint16
    if spec.has_regions:
        return paint_regions(torch.sigmoid(scores), spec.regions_class_order or ()).astype(dtype)
    return scores.argmax(0).numpy().astype(dtype)


def find_previous_stage_file(folder: Path, case_id: str, file_ending: str) -> Path | None:
    """``<case><file_ending>`` (source geometry), else ``<case>.b2nd`` / ``<case>.npz`` (preprocessed grid), else None."""
    for ending in (file_ending, *PREPROCESSED_ENDINGS):
        if (path := folder / f"{case_id}{ending}").is_file():
            return path
    return None


def _read_preprocessed(path: Path) -> np.ndarray:
    try:
        if path.name.endswith(".b2nd"):
            import blosc2

            return np.asarray(blosc2.open(str(path), mode="r")[...])
        with np.load(path, allow_pickle=False) as content:
            return np.asarray(content["seg"])
    except Exception as err:  # blosc2, zipfile and numpy raise many kinds on damaged or foreign files
        raise PredictionError(
            f"{path} cannot be read as a previous-stage segmentation ({type(err).__name__}: {err}); expected "
            "nnU-Net's predicted_next_stage file (.b2nd, or .npz with key 'seg'). Predict it again."
        ) from err


class PreviousStageReader:
    """Preprocess a case together with its previous-stage segmentation into the cascade network's input.

    Args:
        preprocessor: The full-resolution stage's preprocessor.
        folder: Holds, per case, ``<case><file_ending>`` (a label map on the source image, e.g. the output of
            the ``3d_lowres`` stage) or ``<case>.b2nd`` / ``<case>.npz`` (nnU-Net's ``predicted_next_stage``
            files, already on the full-resolution preprocessed grid).
    """

    def __init__(self, preprocessor: Preprocessor, folder: Path) -> None:
        self.preprocessor = preprocessor
        self.folder = Path(folder)

    @property
    def spec(self) -> DatasetSpec:
        """The dataset's channels and labels."""
        return self.preprocessor.spec

    def file_for(self, case_id: str) -> Path:
        """The previous-stage file of ``case_id``.

        Raises:
            PredictionError: If the folder has none.
        """
        path = find_previous_stage_file(self.folder, case_id, self.spec.file_ending)
        if path is None:
            raise PredictionError(
                f"no previous-stage segmentation of case {case_id!r} in {self.folder}; expected {case_id}"
                f"{self.spec.file_ending} (the 3d_lowres prediction) or {case_id}.b2nd. Predict the 3d_lowres stage "
                "for it, or leave --prev-stage-predictions out so that nnseg predicts it."
            )
        return path

    def preprocess_case(self, case: Case) -> PreprocessedCase:
        """Read and preprocess ``case`` and append its one-hot previous-stage foreground to the channels.

        Raises:
            PredictionError: If the previous-stage file is missing, unreadable, of another shape, or holds labels
                the dataset does not have.
        """
        path = self.file_for(case.case_id)
        if path.name.endswith(PREPROCESSED_ENDINGS):
            result = self.preprocessor.preprocess_case(case)
            seg = _read_preprocessed(path)
            seg = seg[0] if seg.ndim == 4 and seg.shape[0] == 1 else seg
            expected = tuple(result.properties.shape_after_resampling)
            if tuple(seg.shape) != expected:
                raise PredictionError(
                    f"{path}: previous-stage segmentation of shape {tuple(seg.shape)} does not fit case {case.case_id!r}, "
                    f"whose preprocessed grid is {expected}; it belongs to another configuration or case. Give the "
                    "predicted_next_stage folder of this configuration."
                )  # fmt: skip
        else:
            images, geometry = read_images(case.image_paths)
            seg = read_segmentation(path)[0]
            return preprocess_with_previous(self.preprocessor, images, geometry.spacing, seg, where=str(path),
                                            geometry=geometry, case_id=case.case_id)  # fmt: skip
        check_previous_stage_labels(seg, self.spec, str(path))
        data = append_previous_stage(result.data, seg, self.spec)
        return PreprocessedCase(result.case_id, data, None, result.properties, None)


def preprocess_with_previous(
    preprocessor: Preprocessor, images: np.ndarray, spacing: Sequence[float], previous: np.ndarray, *, where: str,
    geometry: ImageGeometry | None = None, case_id: str = "",
) -> PreprocessedCase:  # fmt: skip
    """Preprocess a case's images with its previous-stage label map on the same (source) grid; append the one-hot.

    The label map is transposed, cropped and resampled as a label map of the case (nnU-Net passes it in the
    label slot of its preprocessor), so it lands on the case's preprocessed grid with -1 outside the nonzero
    region (no channel).

    Raises:
        PredictionError: If ``previous`` is not on the grid of ``images`` or holds labels the dataset lacks.
    """
    previous = np.asarray(previous)
    previous = previous[0] if previous.ndim == 4 and previous.shape[0] == 1 else previous
    if previous.shape != images.shape[1:]:
        raise PredictionError(
            f"{where}: previous-stage segmentation of shape {previous.shape} does not fit case {case_id!r}, whose "
            f"images are {images.shape[1:]}; expected the 3d_lowres prediction of these images."
        )  # fmt: skip
    check_previous_stage_labels(previous, preprocessor.spec, where)
    result = preprocessor.preprocess(images, spacing, seg=previous, geometry=geometry, case_id=case_id)
    data = append_previous_stage(result.data, np.asarray(result.seg), preprocessor.spec)
    return PreprocessedCase(result.case_id, data, None, result.properties, None)
