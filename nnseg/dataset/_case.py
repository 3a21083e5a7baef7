"""``Case``: the files of one case of a raw dataset, and nnU-Net's file naming rule.

Image files are named ``<case_id>_<XXXX><ending>`` where ``XXXX`` is the 4-digit channel index; label
files are named ``<case_id><ending>``. The case id is everything before the last ``_XXXX``, so ids may
themselves contain underscores and digits (``liver_0003_0000.nii.gz`` is channel 0 of ``liver_0003``).

A case of a colour-format dataset (PNG, BMP, TIFF) may instead give every channel in one file
``<case>_0000<ending>``, one channel per colour (nnU-Net's natural-image convention, e.g. an RGB photo for
``channel_names`` R, G, B). The layout cannot tell such a file from a missing channel without reading it,
so :func:`read_case_images` checks the colour count when the file is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnseg._image_formats import IMAGE_FORMAT_ENDINGS
from nnseg.errors import DatasetError
from nnseg.io import ImageGeometry, read_images

__all__ = [
    "Case",
    "channel_count_message",
    "channel_files_fit",
    "holds_all_channels",
    "image_file_name",
    "label_file_name",
    "parse_image_file_name",
    "read_case_images",
]

CHANNEL_DIGITS = 4
"""Width of the zero-padded channel index in image file names."""


@dataclass(frozen=True, slots=True)
class Case:
    """One case: its id, one image file per channel, and its label file if it has one.

    Args:
        case_id: Identifier, e.g. ``"liver_003"``.
        image_paths: One file per input channel, in channel order.
        label_path: The label map, or None for test cases.

    Raises:
        DatasetError: If ``case_id`` is not a non-empty string or ``image_paths`` is empty.
    """

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.case_id, str) or not self.case_id:
            raise DatasetError(f"Case: case_id must be a non-empty string; got {self.case_id!r}.")
        if isinstance(self.image_paths, str | Path):
            raise DatasetError(
                f"Case {self.case_id!r}: image_paths must be a sequence of paths (one per channel); got the single "
                f"path {str(self.image_paths)!r}. Wrap it in a tuple: image_paths=(path,)."
            )
        object.__setattr__(self, "image_paths", tuple(Path(p) for p in self.image_paths))
        if not self.image_paths:
            raise DatasetError(f"Case {self.case_id!r}: image_paths is empty; expected one image file per channel.")
        if self.label_path is not None:
            object.__setattr__(self, "label_path", Path(self.label_path))

    @property
    def num_channels(self) -> int:
        """Number of image files: one per channel, or 1 for a colour file holding every channel.

        See :func:`holds_all_channels`; the channels a colour file holds are known once it is read.
        """
        return len(self.image_paths)

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file of the case: the images in channel order, then the label (if any)."""
        return self.image_paths + ((self.label_path,) if self.label_path is not None else ())


def image_file_name(case_id: str, channel: int, file_ending: str) -> str:
    """Return the file name of one channel of a case, e.g. ``liver_003_0001.nii.gz``.

    Args:
        case_id: The case id.
        channel: Channel index, 0 to 9999.
        file_ending: The dataset's file ending, e.g. ``".nii.gz"``.
    """
    return f"{case_id}_{channel:0{CHANNEL_DIGITS}d}{file_ending}"


def label_file_name(case_id: str, file_ending: str) -> str:
    """Return the file name of the label map of a case, e.g. ``liver_003.nii.gz``."""
    return f"{case_id}{file_ending}"


def parse_image_file_name(name: str, file_ending: str) -> tuple[str, int] | None:
    """Split an image file name into ``(case_id, channel)``.

    Args:
        name: A file name (no folder), e.g. ``"liver_003_0001.nii.gz"``.
        file_ending: The dataset's file ending.

    Returns:
        ``(case_id, channel)``, or None when ``name`` does not follow ``<case_id>_<XXXX><ending>`` with a
        non-empty case id.
    """
    match = re.fullmatch(rf"(.+)_([0-9]{{{CHANNEL_DIGITS}}}){re.escape(file_ending)}", name, flags=re.DOTALL)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def holds_all_channels(case: Case, num_channels: int) -> bool:
    """Whether ``case`` gives its ``num_channels`` (> 1) channels in one colour file (PNG, BMP or TIFF).

    Args:
        case: The case.
        num_channels: The channels dataset.json declares.
    """
    return num_channels > 1 and len(case.image_paths) == 1 and is_colour_format(case.image_paths[0].name)


def is_colour_format(name: str) -> bool:
    """Whether a file name has an ending whose files may hold several colours (PNG, BMP, TIFF)."""
    return name.lower().endswith(IMAGE_FORMAT_ENDINGS)


def channel_files_fit(case: Case, num_channels: int) -> bool:
    """Whether ``case`` has one image file per channel, or one colour file holding every channel."""
    return len(case.image_paths) == num_channels or holds_all_channels(case, num_channels)


def channel_count_message(paths: Sequence[Path], found: int, channel_names: Sequence[str]) -> str:
    """Say that the image files of a case hold ``found`` channels where dataset.json declares others.

    Args:
        paths: The image files as they should be named in the message.
        found: The channels the files hold once read (a colour file gives one per colour).
        channel_names: The channel names dataset.json declares.
    """
    expected = len(channel_names)
    declared = f"dataset.json declares {expected} channel(s) {list(channel_names)}"
    if len(paths) != 1:
        names = [p.name for p in paths]
        return (
            f"image files {names} hold {found} channels in total (a colour file gives one channel per colour) "
            f"but {declared}; expected one grey file per channel. Convert the colour files to grey, e.g. "
            "Image.open(p).convert('L') in Pillow, or fix 'channel_names' in dataset.json."
        )
    if expected == 1:
        want, fix = "a grey file", "Convert it to grey, e.g. Image.open(p).convert('L') in Pillow"
    else:
        want = f"one file with {expected} colours" + (" (RGB)" if expected == 3 else "")
        fix = (
            "Convert it, e.g. Image.open(p).convert('RGB') in Pillow"
            if expected == 3
            else (f"Give one grey file per channel (_0000 to _{expected - 1:04d}) instead")
        )
    return (
        f"{paths[0]} holds {found} colour channel(s) but {declared}; expected {want}. {fix}, or fix "
        "'channel_names' in dataset.json."
    )


def read_case_images(case: Case, channel_names: Sequence[str]) -> tuple[np.ndarray, ImageGeometry]:
    """Read every channel of a case (:func:`nnseg.io.read_images`) and check it against dataset.json.

    Args:
        case: The case; one file per channel, or one colour file holding every channel.
        channel_names: The channel names dataset.json declares.

    Returns:
        ``(images, geometry)``: float32 ``(c, z, y, x)`` with ``c == len(channel_names)``.

    Raises:
        DatasetError: If the case has the wrong number of image files, or they hold the wrong number of
            channels (e.g. a grey file where dataset.json declares R, G and B).
        ImageIOError: If a file cannot be read.
    """
    expected = len(channel_names)
    if not channel_files_fit(case, expected):
        raise DatasetError(
            f"case {case.case_id!r}: {len(case.image_paths)} image file(s) "
            f"({', '.join(p.name for p in case.image_paths)}) but dataset.json declares {expected} channel(s) "
            f"{list(channel_names)}; expected files <case>_0000 ... <case>_{expected - 1:04d} (or, for PNG, BMP "
            "and TIFF, one colour file <case>_0000 holding every channel)."
        )
    images, geometry = read_images(case.image_paths)
    if images.shape[0] != expected:
        raise DatasetError(
            f"case {case.case_id!r}: {channel_count_message(case.image_paths, images.shape[0], channel_names)}"
        )
    return images, geometry
