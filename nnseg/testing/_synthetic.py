"""``make_synthetic_dataset``: write a small, deterministic nnU-Net raw dataset to disk.

The folder ``out_dir/dataset_name`` receives ``imagesTr/<case>_<XXXX><ending>``, ``labelsTr/`` and, when
``num_test_cases > 0``, ``imagesTs/`` and ``labelsTs/`` with held-out cases; ``dataset.json`` is written last, so
its presence means the dataset is complete. Cases are named ``case_000``, ``case_001``, ...; the test cases continue
the numbering. Case ``i`` holds the arrays of :func:`make_synthetic_case` with ``seed=(seed, i)`` for that case's
shape, so the output is a pure function of the arguments (same arguments, identical files; another seed, other
data). CT images are written as int16, MR images as float32, labels as uint8.

Every case gets its own shape (each axis of ``shape`` times a factor in [0.85, 1.15]; 2 % with ``large``) and its
own origin; the spacing is ``spacing`` exactly unless ``spacing_jitter`` is set (rounded to 4 decimals). NIfTI
stores spacing and origin as float32, so a spacing such as 0.8 reads back as 0.800000011920929 (``.nrrd`` and
``.mha`` keep it exact). ``rgb`` writes three colours derived from the grey image into one PNG per case
(nnU-Net's natural-image convention; needs ``num_channels=1``). ``large`` images are about 256^3 voxels, large
against the patch, so the default :class:`~nnseg.planning.Planner` keeps ``3d_lowres`` and ``3d_cascade_fullres``
(with the default spacing and CT; MR's crop to the body makes its images smaller); leave ``shape`` at its default.

An existing folder is reused only when it is empty, holds the same synthetic dataset (its ``dataset.json``
records the generator arguments), or holds nothing but files this call would write anyway (an interrupted
earlier call). Anything else is refused unless ``overwrite=True``, which deletes the image and label files in
the four image folders (other files are left alone) before writing.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write
from nnseg._checks import parse_bool, parse_choice, parse_int, parse_number
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.io import SUPPORTED_ENDINGS, ImageGeometry, write_image, write_segmentation
from nnseg.testing._synthetic_case import (
    MAX_CLASSES,
    MIN_EXTENT,
    channel_names,
    check_lesion_scale,
    check_modality,
    check_shape,
    label_names,
    make_synthetic_case,
)
from nnseg.testing._synthetic_folder import prepare_folder

__all__ = ["make_synthetic_dataset"]

logger = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Bumped whenever the same arguments would produce different data."""
SHAPE_JITTER = 0.15
"""Each case's extent along each axis is the requested one times a factor in [1 - j, 1 + j]."""
CALLER = "make_synthetic_dataset"
PNG = ".png"
"""A 2D natural-image dataset: 8-bit grey PNG files, spacing 1 (``two_d=True`` only)."""
RGB_CHANNEL_NAMES = ("R", "G", "B")
"""The channels of an RGB dataset, as in nnU-Net's natural-image examples (z-score normalised)."""
LARGE_SHAPE = (256, 256, 256)
"""The shape of ``large=True``: the default planner (8 GB) keeps ``3d_lowres`` from a median of about 250^3."""
LARGE_SHAPE_JITTER = 0.02
"""The smaller shape jitter of ``large=True``, so that no case falls below that median."""
DEFAULT_SHAPE = (32, 48, 48)


@dataclass(frozen=True, slots=True)
class _Settings:
    """The validated arguments that determine the data."""

    num_cases: int
    num_test_cases: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    modality: str
    num_channels: int
    num_classes: int
    seed: int
    two_d: bool
    spacing_jitter: float
    file_ending: str
    lesion_scale: float = 1.0
    rgb: bool = False
    large: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "generator": "nnseg.testing.make_synthetic_dataset",
            "generator_version": GENERATOR_VERSION,
            "num_cases": self.num_cases,
            "num_test_cases": self.num_test_cases,
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "modality": self.modality,
            "num_channels": self.num_channels,
            "num_classes": self.num_classes,
            "seed": self.seed,
            "two_d": self.two_d,
            "spacing_jitter": self.spacing_jitter,
            # recorded only when set, so datasets written before the option existed keep their dataset.json
            **({"lesion_scale": self.lesion_scale} if self.lesion_scale != 1.0 else {}),
            **({"rgb": True} if self.rgb else {}),
            **({"large": True} if self.large else {}),
        }

    def case_id(self, index: int) -> str:
        width = max(3, len(str(self.num_cases + self.num_test_cases - 1)))
        return f"case_{index:0{width}d}"


def make_synthetic_dataset(
    out_dir: str | os.PathLike[str], *, num_cases: int = 8, shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = (1.0, 1.0, 1.0), modality: str = "ct", num_channels: int = 1, num_classes: int = 3,
    seed: int = 0, num_test_cases: int = 0, two_d: bool = False, dataset_name: str = "Dataset001_Synthetic",
    file_ending: str = ".nii.gz", spacing_jitter: float = 0.0, overwrite: bool = False, lesion_scale: float = 1.0,
    rgb: bool = False, large: bool = False,
) -> Path:  # fmt: skip
    """Write a synthetic dataset in the nnU-Net v2 raw layout and return its folder (see the module docstring).

    Args:
        out_dir: Parent folder, created if needed.
        num_cases: Number of training cases (>= 1).
        shape: Typical spatial shape ``(z, y, x)``, each entry >= 8 (each case varies it by up to 15 %).
        spacing: Spacing in mm ``(z, y, x)``, e.g. ``(5.0, 1.0, 1.0)`` for thick slices.
        modality: ``"ct"`` or ``"mr"`` (channel names, normalisation; see :func:`make_synthetic_case`).
        num_channels: Number of image channels (>= 1).
        num_classes: Labels including background, 2 to 10: background, organ, lesion (small), structure3, ...
        seed: Non-negative seed; the files are a pure function of the arguments.
        num_test_cases: Held-out cases in ``imagesTs``/``labelsTs`` (>= 0).
        two_d: Write 2D files ``(y, x)`` from the last two entries of ``shape`` and ``spacing``.
        dataset_name: Name of the dataset folder, normally ``DatasetNNN_Name``.
        file_ending: ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``; with ``two_d`` also ``.png`` (8-bit grey).
        spacing_jitter: Each case's spacing times a factor in ``[1 - jitter, 1 + jitter]`` (below 0.5).
        overwrite: Replace the image and label files of a folder that holds something else.
        lesion_scale: Factor on the lesion's semi-axes in [0.5, 2.5] (the demo uses 1.8).
        rgb: One 8-bit RGB PNG per case (channels ``R``, ``G``, ``B``); needs ``two_d`` and ``.png``.
        large: 3D cases of about 256^3 voxels, so the default planner plans the cascade; not with ``two_d``.

    Returns:
        The dataset folder ``out_dir/dataset_name``.

    Raises:
        ConfigError: If an argument is out of range, or the folder holds other data and ``overwrite`` is
            False.
    """
    settings = _validate(
        num_cases=num_cases, shape=shape, spacing=spacing, modality=modality, num_channels=num_channels,
        num_classes=num_classes, seed=seed, num_test_cases=num_test_cases, two_d=two_d, file_ending=file_ending,
        spacing_jitter=spacing_jitter, lesion_scale=lesion_scale, rgb=rgb, large=large,
    )  # fmt: skip
    folder = Path(out_dir) / _check_dataset_name(dataset_name)
    spec = _dataset_spec(settings, dataset_name)
    prepare_folder(folder, spec, _expected_files(settings), overwrite=overwrite)
    for index in range(settings.num_cases + settings.num_test_cases):
        _write_case(folder, settings, index)
    spec.save(folder / "dataset.json")
    logger.info("wrote %d training and %d test cases to %s", settings.num_cases, settings.num_test_cases, folder)
    return folder


def _dataset_spec(settings: _Settings, dataset_name: str) -> DatasetSpec:
    """The ``dataset.json`` of a generated dataset (it records the generator's settings)."""
    return DatasetSpec(
        channel_names=RGB_CHANNEL_NAMES if settings.rgb else channel_names(settings.modality, settings.num_channels),
        labels={name: value for value, name in enumerate(label_names(settings.num_classes))},
        num_training=settings.num_cases,
        file_ending=settings.file_ending,
        extra={
            "name": dataset_name,
            "description": f"Synthetic {settings.modality.upper()}-like dataset written by nnseg",
            "nnseg_synthetic": settings.to_json(),
        },
    )


def _validate(
    *, shape: Any, spacing: Any, two_d: Any, spacing_jitter: Any, rgb: Any, large: Any, **values: Any
) -> _Settings:
    parse_bool(CALLER, "two_d", two_d)
    parse_bool(CALLER, "rgb", rgb)
    if parse_bool(CALLER, "large", large):
        shape = _large_shape(shape, two_d)
    if two_d and isinstance(shape, Sequence) and len(shape) == 3:
        shape = tuple(shape)[1:]  # 2D uses (y, x); the z entry is ignored
    if two_d and isinstance(spacing, Sequence) and len(spacing) == 3:
        spacing = tuple(spacing)[1:]  # also the default spacing with a (y, x) shape
    spatial = check_shape(CALLER, shape, (2,) if two_d else (3,))
    if not isinstance(spacing, Sequence) or isinstance(spacing, str) or len(spacing) != len(shape):
        raise ConfigError(
            f"{CALLER}: spacing must have one entry per entry of shape ({len(shape)}), in array order (z, y, x); "
            f"got {spacing!r}."
        )
    if not all(_is_real(s) and math.isfinite(s) and s > 0 for s in spacing):
        raise ConfigError(f"{CALLER}: every spacing must be a finite number > 0 (mm); got {tuple(spacing)!r}.")
    parse_number(CALLER, "spacing_jitter", spacing_jitter, low=0.0, high=0.5, high_open=True)
    ending = values["file_ending"]
    if not (two_d and ending == PNG):  # PNG only for 2D datasets
        parse_choice(CALLER, "file_ending", ending, SUPPORTED_ENDINGS)
    settings = _Settings(
        num_cases=parse_int(CALLER, "num_cases", values["num_cases"], minimum=1),
        num_test_cases=parse_int(CALLER, "num_test_cases", values["num_test_cases"], minimum=0),
        shape=spatial,
        spacing=tuple(float(s) for s in spacing),
        modality=check_modality(CALLER, values["modality"]),
        num_channels=parse_int(CALLER, "num_channels", values["num_channels"], minimum=1),
        num_classes=parse_int(CALLER, "num_classes", values["num_classes"], minimum=2, maximum=MAX_CLASSES),
        seed=parse_int(CALLER, "seed", values["seed"], minimum=0),
        two_d=two_d,
        spacing_jitter=float(spacing_jitter),
        file_ending=ending,
        lesion_scale=check_lesion_scale(CALLER, values["lesion_scale"]),
        rgb=rgb,
        large=large,
    )
    if rgb and not (two_d and settings.file_ending == PNG and settings.num_channels == 1):
        raise ConfigError(
            f"{CALLER}: rgb=True writes 2D RGB PNG files derived from one grey image; expected two_d=True, "
            f"file_ending='.png' and num_channels=1, got two_d={two_d!r}, file_ending={settings.file_ending!r}, "
            f"num_channels={settings.num_channels}. CLI: nnseg synth OUT --two-d --file-ending .png --rgb."
        )
    return settings


def _large_shape(shape: Any, two_d: bool) -> tuple[int, ...]:
    """``LARGE_SHAPE``, refusing a combination that would silently ignore ``shape`` or ``two_d``."""
    if two_d:
        raise ConfigError(f"{CALLER}: large=True writes 3D cases; it cannot be combined with two_d=True.")
    if not isinstance(shape, Sequence) or tuple(shape) != DEFAULT_SHAPE:
        raise ConfigError(
            f"{CALLER}: large=True sets the shape to {LARGE_SHAPE}; got shape {shape!r} as well. Leave shape at its "
            "default (CLI: drop --shape), or drop large and pass the shape you want."
        )
    return LARGE_SHAPE


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_dataset_name(name: Any) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(
            f"{CALLER}: dataset_name must be a plain folder name such as 'Dataset001_Synthetic'; got {name!r}."
        )
    if not re.fullmatch(r"Dataset\d{3}_\w+", name):
        warnings.warn(
            f"{CALLER}: dataset_name {name!r} does not follow nnU-Net's 'DatasetNNN_Name' pattern; nnU-Net's own "
            "tools will not find it by id.",
            stacklevel=3,
        )
    return name


def _expected_files(settings: _Settings) -> set[str]:
    """Relative paths of every image and label file this call writes."""
    files: set[str] = set()
    ending = settings.file_ending
    for index in range(settings.num_cases + settings.num_test_cases):
        suffix = "Tr" if index < settings.num_cases else "Ts"
        case_id = settings.case_id(index)
        files.update(f"images{suffix}/{case_id}_{c:04d}{ending}" for c in range(settings.num_channels))
        files.add(f"labels{suffix}/{case_id}{ending}")
    return files


def _case_geometry(settings: _Settings, index: int) -> tuple[tuple[int, ...], ImageGeometry]:
    """Shape and geometry of case ``index``: jittered shape, optionally jittered spacing, an offset origin."""
    rng = np.random.default_rng(np.random.SeedSequence((settings.seed, index), spawn_key=(1,)))
    shape_jitter = LARGE_SHAPE_JITTER if settings.large else SHAPE_JITTER
    factors = rng.uniform(1.0 - shape_jitter, 1.0 + shape_jitter, len(settings.shape))
    shape = tuple(max(int(round(n * f)), MIN_EXTENT) for n, f in zip(settings.shape, factors))
    spacing = settings.spacing
    if settings.spacing_jitter > 0.0:
        jitter = rng.uniform(-settings.spacing_jitter, settings.spacing_jitter, len(spacing))
        spacing = tuple(round(s * (1.0 + j), 4) for s, j in zip(spacing, jitter))
    geometry = ImageGeometry.identity(spacing)
    # Centre the image on the origin, shifted by whole millimetres; multiples of 0.5 are exact in float32.
    extent = [n * s for n, s in zip(reversed(shape), geometry.itk_spacing)]
    origin = tuple(float(np.round(-e)) / 2.0 + float(rng.integers(-20, 21)) for e in extent)
    return shape, replace(geometry, itk_origin=origin)


def _write_case(folder: Path, settings: _Settings, index: int) -> None:
    shape, geometry = _case_geometry(settings, index)
    image, label = make_synthetic_case(
        shape,
        modality=settings.modality,
        num_channels=settings.num_channels,
        num_classes=settings.num_classes,
        seed=(settings.seed, index),
        lesion_scale=settings.lesion_scale,
    )
    suffix = "Tr" if index < settings.num_cases else "Ts"
    case_id = settings.case_id(index)
    for sub in (f"images{suffix}", f"labels{suffix}"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if settings.rgb:
        _write_rgb(_to_8_bit(image[0], settings.modality), folder / f"images{suffix}" / f"{case_id}_0000{PNG}")
        write_segmentation(label, folder / f"labels{suffix}" / f"{case_id}{PNG}", geometry)
        return
    dtype = np.int16 if settings.modality == "ct" else np.float32
    for channel in range(settings.num_channels):
        path = folder / f"images{suffix}" / f"{case_id}_{channel:04d}{settings.file_ending}"
        pixels = _to_8_bit(image[channel], settings.modality) if settings.file_ending == PNG else image[channel]
        write_image(pixels.astype(dtype) if settings.file_ending != PNG else pixels, path, geometry)
    write_segmentation(label, folder / f"labels{suffix}" / f"{case_id}{settings.file_ending}", geometry)


def _to_8_bit(image: np.ndarray, modality: str) -> np.ndarray:
    """Grey values 0..255 for a PNG: CT through a soft-tissue window, MR scaled by its 99.5th percentile."""
    low, high = (-160.0, 240.0) if modality == "ct" else (0.0, float(np.percentile(image, 99.5)) or 1.0)
    return np.clip(np.rint((image - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def _write_rgb(grey: np.ndarray, path: Path) -> None:
    """One RGB PNG whose three colours are distinct functions of the grey values (so no channel is redundant)."""
    from PIL import Image

    g = grey.reshape(grey.shape[-2:]).astype(np.float32)
    colours = np.stack([g, 0.75 * g + 40.0, 255.0 - 0.6 * g], axis=-1)
    image = Image.fromarray(np.clip(np.rint(colours), 0, 255).astype(np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
