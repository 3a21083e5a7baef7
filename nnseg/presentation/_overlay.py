"""Overlay pictures: one PNG per case with each label's outline on the image slice with the most foreground."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnseg._atomic import atomic_write_bytes
from nnseg._image_formats import IMAGE_FORMAT_ENDINGS
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError, DatasetError
from nnseg.io import SUPPORTED_ENDINGS, ImageGeometry, read_image, read_images, read_segmentation
from nnseg.presentation._render import Panel, check_slice, foreground_slice, png_bytes, render_panels

__all__ = ["Overlay", "find_dataset_spec", "find_image_file", "overlay_arrays", "overlay_case", "write_overlays"]

PathLike = str | os.PathLike[str]
ENDINGS = (*SUPPORTED_ENDINGS, *IMAGE_FORMAT_ENDINGS)


@dataclass(frozen=True, eq=False)
class Overlay:
    """One overlay picture.

    Args:
        case_id: The case it shows.
        slice_index: Index of the slice along the first array axis (0 for a 2D image).
        rgb: The picture, ``(height, width, 3)`` uint8.
    """

    case_id: str
    slice_index: int
    rgb: np.ndarray

    def png(self) -> bytes:
        """The picture encoded as PNG."""
        return png_bytes(self.rgb)

    def save(self, path: PathLike) -> Path:
        """Write the picture as a PNG file atomically and return its path."""
        path = Path(path)
        atomic_write_bytes(path, self.png())
        return path


def label_names_of(spec: DatasetSpec | None) -> dict[int, str]:
    """Label value -> name for the plain (non-region) labels of a dataset."""
    if spec is None:
        return {}
    return {int(value): name for name, value in spec.labels.items() if isinstance(value, int)}


def is_ct(spec: DatasetSpec | None, channel: int) -> bool:
    """Whether ``channel`` of the dataset is CT (its name in dataset.json is "CT", in any case)."""
    return spec is not None and channel < spec.num_channels and spec.channel_names[channel].upper() == "CT"


def overlay_arrays(
    image: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray | None = None,
    *,
    case_id: str = "",
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    label_names: Mapping[int, str] | None = None,
    ct: bool = False,
    slice_index: int | None = None,
) -> Overlay:
    """Draw an overlay from arrays already in memory.

    Args:
        image: One channel, ``(z, y, x)`` (``(1, y, x)`` for 2D).
        labels: Label map (prediction or ground truth) of the same shape, or with a leading channel axis of 1.
        reference: Optional ground truth of the same shape; shown to the right of ``labels``.
        case_id: Shown in the title.
        spacing: Spacing in array order, for the pixel aspect ratio.
        label_names: Legend names of label values.
        ct: Use the CT soft-tissue window instead of percentiles.
        slice_index: Slice along the first axis; default the one with the most foreground.

    Returns:
        The :class:`Overlay`.
    """
    labels = labels[0] if labels.ndim == image.ndim + 1 else labels
    maps = [labels] if reference is None else [labels, reference[0] if reference.ndim == image.ndim + 1 else reference]
    index = foreground_slice(*maps) if slice_index is None else check_slice(slice_index, image.shape[0], case_id)
    titles = ["labels"] if reference is None else ["prediction", "reference"]
    panels = [Panel(title, m[index]) for title, m in zip(titles, maps)]
    depth = f", slice {index}/{image.shape[0]}" if image.shape[0] > 1 else ""
    rgb = render_panels(
        image[index], panels, label_names=label_names or {}, ct=ct, aspect=float(spacing[-2]) / float(spacing[-1]),
        title=f"{case_id}{depth}",
    )  # fmt: skip
    return Overlay(case_id, index, rgb)


def _same_grid(a: ImageGeometry, shape_a: tuple[int, ...], b: ImageGeometry, shape_b: tuple[int, ...]) -> bool:
    return shape_a == shape_b and np.allclose(a.itk_spacing, b.itk_spacing, rtol=1e-3, atol=0)


def _check_grid(image_file: Path, image: np.ndarray, geometry: ImageGeometry, other: Path, array: np.ndarray,
                other_geometry: ImageGeometry) -> None:  # fmt: skip
    if not _same_grid(geometry, image.shape, other_geometry, array.shape[1:]):
        raise DatasetError(
            f"overlay: {other} has shape {array.shape[1:]} and spacing {other_geometry.spacing} but its image "
            f"{image_file} has shape {image.shape} and spacing {geometry.spacing}; expected a label map on the "
            "image's grid. Pass the image folder the labels were made from (imagesTr for labelsTr and a run's "
            "validation folder, imagesTs for test predictions), or resample the labels onto the image."
        )


def overlay_case(
    image_file: PathLike,
    labels_file: PathLike,
    *,
    reference_file: PathLike | None = None,
    spec: DatasetSpec | None = None,
    channel: int = 0,
    slice_index: int | None = None,
    case_id: str | None = None,
) -> Overlay:
    """Draw the overlay of one case from its files.

    Args:
        image_file: The image file of the channel to show (``<case>_<XXXX><ending>``).
        labels_file: Label map or prediction on the same grid.
        reference_file: Optional ground truth, drawn beside ``labels_file``.
        spec: The dataset's spec, for label names and for the CT window (channel named "CT").
        channel: Which channel ``image_file`` is (only used to look up its name in ``spec``).
        slice_index: Slice along the first array axis; default the one with the most foreground.
        case_id: Title; default the label file's name without its ending.

    Returns:
        The :class:`Overlay`.

    Raises:
        DatasetError: If a label map is not on the image's grid (the message names both files).
        ImageIOError: If a file cannot be read.
        ConfigError: If ``slice_index`` is out of range.
    """
    image_file, labels_file = Path(image_file), Path(labels_file)
    image, geometry = _read_shown_image(image_file)
    labels, labels_geometry = read_segmentation(labels_file)
    _check_grid(image_file, image, geometry, labels_file, labels, labels_geometry)
    reference = None
    if reference_file is not None:
        reference, reference_geometry = read_segmentation(reference_file)
        _check_grid(image_file, image, geometry, Path(reference_file), reference, reference_geometry)
    return overlay_arrays(
        image, labels, reference, case_id=case_id or _case_of(labels_file), spacing=geometry.spacing,
        label_names=label_names_of(spec), ct=is_ct(spec, channel), slice_index=slice_index,
    )  # fmt: skip


def _read_shown_image(path: Path) -> tuple[np.ndarray, ImageGeometry]:
    """One channel ``(z, y, x)``; a colour file (e.g. an RGB photo holding every channel) shows its mean colour."""
    if path.name.lower().endswith(IMAGE_FORMAT_ENDINGS):
        images, geometry = read_images([path])
        return images.mean(axis=0), geometry
    return read_image(path)


def _case_of(path: Path) -> str:
    ending = next((e for e in sorted(ENDINGS, key=len, reverse=True) if path.name.endswith(e)), path.suffix)
    return path.name[: len(path.name) - len(ending)] if ending else path.name


def _readable(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.endswith(ENDINGS)


def find_dataset_spec(*folders: PathLike) -> DatasetSpec | None:
    """The spec of the first ``dataset.json`` found in one of ``folders`` or their parents, else None."""
    for folder in folders:
        for candidate in (Path(folder), Path(folder).parent):
            if (candidate / "dataset.json").is_file():
                return DatasetSpec.load(candidate / "dataset.json")
    return None


def _resolve(folder: PathLike, sub: str) -> Path:
    """``folder/sub`` when ``folder`` is a raw dataset folder (it has dataset.json and ``sub``), else ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"overlay: {folder} is not a folder; expected a folder of image or label files.")
    return folder / sub if (folder / "dataset.json").is_file() and (folder / sub).is_dir() else folder


def find_image_file(images: Path, case_id: str, channel: int) -> Path:
    """The file ``images/<case_id>_<channel:04d><ending>``; DatasetError naming the fix if there is none."""
    prefix = f"{case_id}_{channel:04d}"
    found = sorted(p for p in images.glob(f"{prefix}.*") if _readable(p) and _case_of(p) == prefix)
    if not found:
        raise DatasetError(
            f"overlay: no image {prefix}<ending> for case {case_id!r} in {images}; expected one file per channel "
            "named <case>_<XXXX><ending>. Pass the image folder these labels belong to, or another --channel."
        )
    return found[0]


def write_overlays(
    images: PathLike,
    labels: PathLike,
    out_dir: PathLike,
    *,
    reference: PathLike | None = None,
    spec: DatasetSpec | None = None,
    channel: int = 0,
    slice_index: int | None = None,
    case_ids: Sequence[str] | None = None,
) -> list[Path]:
    """Write ``out_dir/<case>.png`` for every label map in ``labels`` (or only ``case_ids``).

    Args:
        images: Folder of image files ``<case>_<XXXX><ending>``, or a raw dataset folder (its imagesTr).
        labels: Folder of label maps or predictions ``<case><ending>``, or a raw dataset folder (labelsTr).
        out_dir: Where the pictures go (created).
        reference: Optional folder of ground truths shown beside ``labels``.
        spec: The dataset spec; default the first ``dataset.json`` next to ``images`` or ``labels``.
        channel: Image channel to show.
        slice_index: Slice along the first array axis; default each case's slice with the most foreground.
        case_ids: Only these cases.

    Returns:
        The written files, sorted by case id.

    Raises:
        DatasetError: If an image or reference is missing or not on the labels' grid.
    """
    image_dir, label_dir = _resolve(images, "imagesTr"), _resolve(labels, "labelsTr")
    reference_dir = _resolve(reference, "labelsTr") if reference is not None else None
    spec = spec if spec is not None else find_dataset_spec(images, labels)
    if spec is not None and not 0 <= channel < spec.num_channels:
        raise ConfigError(
            f"overlay: channel {channel} does not exist; the dataset has {spec.num_channels} channel(s) "
            f"{list(spec.channel_names)}. Pass --channel in 0..{spec.num_channels - 1}."
        )
    files = {_case_of(p): p for p in sorted(label_dir.iterdir()) if _readable(p)}
    wanted = sorted(files) if case_ids is None else [c for c in case_ids if c in files]
    if not wanted:
        raise DatasetError(f"overlay: no label files in {label_dir}; expected files named <case><ending> such as "
                           "case_000.nii.gz. Pass a labelsTr, prediction or validation folder.")  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for case_id in wanted:
        reference_file = None
        if reference_dir is not None:
            reference_file = next((p for p in reference_dir.glob(f"{case_id}.*") if _readable(p)), None)
            if reference_file is None:
                raise DatasetError(f"overlay: no reference label map for case {case_id!r} in {reference_dir}; "
                                   "expected <case><ending>. Pass the matching labelsTr/labelsTs folder.")  # fmt: skip
        picture = overlay_case(
            find_image_file(image_dir, case_id, channel), files[case_id], reference_file=reference_file, spec=spec,
            channel=channel, slice_index=slice_index, case_id=case_id,
        )  # fmt: skip
        written.append(picture.save(out / f"{case_id}.png"))
    return written
