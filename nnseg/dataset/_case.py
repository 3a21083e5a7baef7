"""``Case``: the files of one case of a raw dataset, and nnU-Net's file naming rule.

Image files are named ``<case_id>_<XXXX><ending>`` where ``XXXX`` is the 4-digit channel index; label
files are named ``<case_id><ending>``. The case id is everything before the last ``_XXXX``, so ids may
themselves contain underscores and digits (``liver_0003_0000.nii.gz`` is channel 0 of ``liver_0003``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nnseg.errors import DatasetError

__all__ = ["Case", "image_file_name", "label_file_name", "parse_image_file_name"]

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
        """Number of image files (one per channel)."""
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
