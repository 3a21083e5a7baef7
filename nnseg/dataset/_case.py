"""``Case``: the files of one case of a raw dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Case"]


@dataclass(frozen=True, slots=True)
class Case:
    """One case: its id, one image file per channel, and its label file if it has one.

    Args:
        case_id: Identifier, e.g. ``"liver_003"``.
        image_paths: One file per input channel, in channel order.
        label_path: The label map, or None for test cases.
    """

    case_id: str
    image_paths: tuple[Path, ...]
    label_path: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_paths", tuple(Path(p) for p in self.image_paths))
        if self.label_path is not None:
            object.__setattr__(self, "label_path", Path(self.label_path))
