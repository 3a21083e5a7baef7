"""The pieces of a postprocessing decision: keep-largest-component steps and the trials that chose them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnseg.dataset import DatasetSpec
from nnseg.errors import PostprocessingError
from nnseg.evaluation._metrics import LabelOrRegion, evaluated_labels, label_key
from nnseg.postprocessing._components import keep_largest_component_of

__all__ = ["PostprocessingStep", "Trial", "apply_steps", "label_from_json", "label_to_json", "labels_of", "steps_key"]

FORMAT_VERSION = 1
OPERATION = "keep_largest_component"


def label_to_json(label: LabelOrRegion) -> int | list[int]:
    """A label value as JSON (an int), or a region (tuple) as a list of ints."""
    return [int(v) for v in label] if isinstance(label, tuple) else int(label)


def label_from_json(value: Any, where: str) -> LabelOrRegion:
    """Parse :func:`label_to_json` output.

    Raises:
        PostprocessingError: If ``value`` is neither an int nor a non-empty list of ints.
    """
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PostprocessingError(f"{where}: label {value!r} is neither an int nor a list of ints; the file is damaged.")


@dataclass(frozen=True, slots=True)
class PostprocessingStep:
    """Keep only the largest connected component of the union of ``labels``; other voxels of it become 0.

    Args:
        labels: Label values and / or regions (tuples) forming the mask.
    """

    labels: tuple[LabelOrRegion, ...]

    def apply(self, segmentation: np.ndarray) -> np.ndarray:
        """Return a postprocessed copy of ``segmentation``."""
        return keep_largest_component_of(segmentation, self.labels)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"operation": OPERATION, "labels": [label_to_json(label) for label in self.labels]}

    @classmethod
    def from_json(cls, data: Any, *, where: str = "postprocessing step") -> PostprocessingStep:
        """Parse :meth:`to_json` output.

        Raises:
            PostprocessingError: If the operation is unknown or the labels are malformed.
        """
        if (
            not isinstance(data, Mapping)
            or data.get("operation") != OPERATION
            or not isinstance(data.get("labels"), list)
        ):
            raise PostprocessingError(
                f'{where}: expected {{"operation": "{OPERATION}", "labels": [...]}}; got {data!r}.'
            )
        return cls(tuple(label_from_json(value, where) for value in data["labels"]))


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate step of the determination and the Dice it was judged on.

    Args:
        labels: The step's labels.
        criterion: ``"foreground_mean"`` or the label key whose Dice decided.
        dice_before: That Dice without the step.
        dice_after: That Dice with the step.
        accepted: Whether the step was kept.
    """

    labels: tuple[LabelOrRegion, ...]
    criterion: str
    dice_before: float
    dice_after: float
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"labels": [label_to_json(v) for v in self.labels], "criterion": self.criterion,
                "dice_before": self.dice_before, "dice_after": self.dice_after, "accepted": self.accepted}  # fmt: skip


def apply_steps(steps: Sequence[PostprocessingStep], segmentation: np.ndarray) -> np.ndarray:
    """Apply ``steps`` in order to a copy of ``segmentation``."""
    result = np.asarray(segmentation)
    for step in steps:
        result = step.apply(result)
    return result if steps else result.copy()


def labels_of(spec: DatasetSpec) -> tuple[str, ...]:
    """The evaluated label / region keys of ``spec`` (what a :class:`Postprocessing` records)."""
    return tuple(label_key(label) for label in evaluated_labels(spec))


def steps_key(steps: Sequence[PostprocessingStep]) -> str:
    """A short human-readable description of steps, e.g. ``"largest of [1, 2]; largest of [1]"``."""
    return "; ".join(f"largest of {[label_to_json(v) for v in step.labels]}" for step in steps) or "none"
