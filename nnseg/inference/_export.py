"""Turn logits in the preprocessed grid into a label map (and probabilities) on the source image.

nnU-Net's export, step by step: resample the logits to the cropped original grid with the plan's
``resampling_fn_probabilities``; for label-based data take the arg-max (probabilities: softmax); for
region-based data apply a sigmoid and paint every region whose probability exceeds 0.5, in
``regions_class_order`` (later regions overwrite earlier ones); paste into the uncropped grid (background
outside the crop box) and undo the transposition.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnseg._atomic import atomic_write_bytes, atomic_write_json
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.io import ImageGeometry, write_segmentation
from nnseg.preprocessing import (
    PROBABILITY_RESAMPLER,
    CaseProperties,
    PreprocessedCase,
    resample_to_cropped_shape,
    uncrop_and_transpose_back,
)
from nnseg.preprocessing._resampling import Resampler

__all__ = ["ExportedPrediction", "export_logits", "paint_regions", "write_outputs"]

REGION_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True, eq=False)
class ExportedPrediction:
    """A prediction on the source image grid.

    Args:
        segmentation: ``(1, z, y, x)`` label map (uint8, uint16 from 255 foreground labels on) in the array
            order of the source files.
        probabilities: float32 ``(num_outputs, z, y, x)`` class (softmax) or region (sigmoid) probabilities,
            or None when they were not asked for.
    """

    segmentation: np.ndarray
    probabilities: np.ndarray | None = None


def paint_regions(probabilities: torch.Tensor, regions_class_order: tuple[int, ...]) -> np.ndarray:
    """Label map from region probabilities: region ``i`` above 0.5 is painted with ``regions_class_order[i]``.

    Args:
        probabilities: ``(num_regions, *spatial)`` sigmoid outputs.
        regions_class_order: The label painted for each region, in painting order.
    """
    segmentation = np.zeros(tuple(probabilities.shape[1:]), dtype=np.uint16)
    for index, label in enumerate(regions_class_order):
        segmentation[(probabilities[index] > REGION_THRESHOLD).numpy()] = label
    return segmentation


def _label_dtype(spec: DatasetSpec) -> type:
    return np.uint8 if len(spec.foreground_labels) < 255 else np.uint16


def export_logits(
    logits: np.ndarray | torch.Tensor,
    properties: CaseProperties,
    spec: DatasetSpec,
    *,
    resampler: Resampler = PROBABILITY_RESAMPLER,
    with_probabilities: bool = False,
    resampling_dtype: type = np.float32,
) -> ExportedPrediction:
    """Map a case's logits back to its source image: resample, arg-max or region rule, uncrop, transpose back.

    Args:
        logits: ``(num_outputs, *properties.shape_after_resampling)`` network outputs (a fold average).
        properties: The case's properties from preprocessing.
        spec: The dataset's labels (label- or region-based, ``regions_class_order``).
        resampler: The plan's ``resampling_fn_probabilities``.
        with_probabilities: Also return the probabilities (background 1 outside the crop box for labels,
            0 everywhere outside it for regions).
        resampling_dtype: dtype the resampled logits are stored in; ``np.float16`` rounds them as nnU-Net does
            after float16 accumulation (needed for bit-identical segmentations), float32 keeps them precise.

    Raises:
        ConfigError: If the number of channels differs from ``spec.num_segmentation_heads`` or the logits are
            not in the preprocessed grid of ``properties``.
    """
    array = logits.detach().cpu().numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    array = array.astype(resampling_dtype, copy=False)
    if array.shape[0] != spec.num_segmentation_heads:
        raise ConfigError(
            f"export: got {array.shape[0]} output channel(s) but the dataset has {spec.num_segmentation_heads} "
            "segmentation head(s); the model was trained for other labels."
        )
    resampled = resample_to_cropped_shape(array, properties, resampler)
    scores = torch.from_numpy(np.ascontiguousarray(resampled, dtype=np.float32))
    probabilities: torch.Tensor | None = None
    if spec.has_regions:
        probabilities = torch.sigmoid(scores)
        cropped = paint_regions(probabilities, spec.regions_class_order or ())
        fill = np.zeros(scores.shape[0], np.float32)
    else:
        cropped = scores.argmax(0).numpy()
        if with_probabilities:
            probabilities = torch.softmax(scores, 0)
        fill = np.zeros(scores.shape[0], np.float32)
        fill[0] = 1.0
    segmentation = uncrop_and_transpose_back(cropped.astype(_label_dtype(spec))[None], properties, fill=0)
    if not with_probabilities or probabilities is None:
        return ExportedPrediction(segmentation)
    full = uncrop_and_transpose_back(probabilities.numpy(), properties, fill=fill)
    return ExportedPrediction(segmentation, full)


def write_probabilities(path: Path, probabilities: np.ndarray) -> None:
    """Write ``<case>.npz`` (key ``probabilities``) atomically; its size on disk is checked before the rename."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probabilities=probabilities)
    atomic_write_bytes(path, buffer.getvalue())


def write_outputs(result: ExportedPrediction, case: PreprocessedCase, output_file: Path) -> None:
    """Write a case's label map (and probabilities + properties), each file atomically, the label map last.

    Every file is verified before it gets its final name (the image by a readback, the others by size).

    Raises:
        WriteError: If the disk is full or a file-size limit is hit; nothing is left under a final name.
    """
    geometry = case.properties.geometry or ImageGeometry.identity(case.properties.spacing)
    if result.probabilities is not None:
        stem = output_file.name[: -len(_ending(output_file))]
        write_probabilities(output_file.with_name(f"{stem}.npz"), result.probabilities)
        atomic_write_json(output_file.with_name(f"{stem}.json"), case.properties.to_json())
    write_segmentation(result.segmentation, output_file, geometry)


def _ending(path: Path) -> str:
    name = path.name
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(ending):
            return ending
    return path.suffix
