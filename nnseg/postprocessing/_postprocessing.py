"""``Postprocessing``: an ordered list of keep-largest-component steps, decided on cross-validation, as JSON.

The JSON form (``postprocessing.json``)::

    {"format_version": 1,
     "labels": ["1", "2"],                        # evaluated label / region keys of the dataset
     "steps": [{"operation": "keep_largest_component", "labels": [1, 2]}, ...],
     "trials": [{"labels": [1, 2], "criterion": "foreground_mean", "dice_before": ..., "dice_after": ...,
                 "accepted": true}, ...],
     "dice_before": {"foreground_mean": ..., "1": ..., "2": ...},
     "dice_after": {...}}

Regions are written as lists (``[1, 2]`` inside ``labels``). Nothing is pickled: the file says what is done.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.dataset import DatasetSpec
from nnseg.errors import NnsegError
from nnseg.evaluation import LabelOrRegion, evaluated_labels, label_key
from nnseg.postprocessing._components import keep_largest_component_of

__all__ = ["Postprocessing", "PostprocessingError", "PostprocessingStep", "Trial"]

FORMAT_VERSION = 1
OPERATION = "keep_largest_component"


class PostprocessingError(NnsegError, ValueError):
    """A postprocessing file is malformed or belongs to other labels, or its folders cannot be used."""


def _label_to_json(label: LabelOrRegion) -> int | list[int]:
    return [int(v) for v in label] if isinstance(label, tuple) else int(label)


def _label_from_json(value: Any, where: str) -> LabelOrRegion:
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
        return {"operation": OPERATION, "labels": [_label_to_json(label) for label in self.labels]}

    @classmethod
    def from_json(cls, data: Any, *, where: str = "postprocessing step") -> PostprocessingStep:
        """Parse :meth:`to_json` output.

        Raises:
            PostprocessingError: If the operation is unknown or the labels are malformed.
        """
        if not isinstance(data, Mapping) or data.get("operation") != OPERATION or not isinstance(data.get("labels"), list):
            raise PostprocessingError(
                f"{where}: expected {{\"operation\": \"{OPERATION}\", \"labels\": [...]}}; got {data!r}."
            )
        return cls(tuple(_label_from_json(value, where) for value in data["labels"]))


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
        return {"labels": [_label_to_json(v) for v in self.labels], "criterion": self.criterion,
                "dice_before": self.dice_before, "dice_after": self.dice_after, "accepted": self.accepted}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Postprocessing:
    """What to do to a predicted label map after prediction.

    Args:
        steps: The accepted steps, applied in order.
        labels: The evaluated label / region keys of the dataset it belongs to (``"1"``, ``"(1, 2)"``).
        trials: Every candidate step tried, in order, with its Dice (empty when built by hand).
        dice_before: Dice on the determination folder without postprocessing (``"foreground_mean"`` and
            per label key).
        dice_after: The same with the accepted steps.

    Example:
        >>> pp = Postprocessing.determine("work/crossval", "raw/labelsTr", spec, "work/crossval_pp")
        >>> pp.save("work/postprocessing.json")
        >>> Postprocessing.load("work/postprocessing.json").apply(segmentation)
    """

    steps: tuple[PostprocessingStep, ...]
    labels: tuple[str, ...]
    trials: tuple[Trial, ...] = ()
    dice_before: Mapping[str, float] = field(default_factory=dict)
    dice_after: Mapping[str, float] = field(default_factory=dict)

    def apply(self, segmentation: np.ndarray) -> np.ndarray:
        """Apply every step in order to a label map (a copy is returned; the input is not modified)."""
        result = np.asarray(segmentation)
        for step in self.steps:
            result = step.apply(result)
        return result if self.steps else result.copy()

    def check_dataset(self, spec: DatasetSpec, *, where: str = "postprocessing") -> None:
        """Raise unless this postprocessing was determined for the labels of ``spec``.

        Raises:
            PostprocessingError: Naming both label sets.
        """
        expected = tuple(label_key(label) for label in evaluated_labels(spec))
        if expected != self.labels:
            raise PostprocessingError(
                f"{where} was determined for labels {list(self.labels)} but the dataset ({spec.source}) has "
                f"{list(expected)}; use the postprocessing file of this dataset (or determine one with "
                "`nnseg postprocess determine`)."
            )

    @classmethod
    def determine(
        cls, pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str], spec: DatasetSpec,
        out_dir: str | os.PathLike[str], *, allow_missing: bool = False, num_workers: int = 1,
    ) -> Postprocessing:  # fmt: skip
        """Decide the postprocessing on a folder of predictions, nnU-Net's rule; write the postprocessed folder.

        See :func:`nnseg.postprocessing.determine_postprocessing` for the rule and the errors.
        """
        from nnseg.postprocessing._determine import determine_postprocessing

        return determine_postprocessing(pred_dir, ref_dir, spec, out_dir, allow_missing=allow_missing,
                                        num_workers=num_workers)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form (see the module docstring)."""
        return {
            "format_version": FORMAT_VERSION, "labels": list(self.labels),
            "steps": [step.to_json() for step in self.steps], "trials": [trial.to_json() for trial in self.trials],
            "dice_before": dict(self.dice_before), "dice_after": dict(self.dice_after),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, *, where: str = "postprocessing") -> Postprocessing:
        """Parse :meth:`to_json` output.

        Raises:
            PostprocessingError: If the content is not a postprocessing description of this version.
        """
        if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
            got = data.get("format_version") if isinstance(data, Mapping) else type(data).__name__
            raise PostprocessingError(
                f"{where}: not an nnseg postprocessing file of format_version {FORMAT_VERSION} (got {got!r}); "
                "nnU-Net's postprocessing.pkl cannot be read (it is a pickle): determine it again with "
                "`nnseg postprocess determine`."
            )
        try:
            steps = tuple(PostprocessingStep.from_json(s, where=where) for s in data["steps"])
            labels = tuple(str(key) for key in data["labels"])
            trials = tuple(
                Trial(tuple(_label_from_json(v, where) for v in t["labels"]), str(t["criterion"]),
                      float(t["dice_before"]), float(t["dice_after"]), bool(t["accepted"]))
                for t in data.get("trials", [])
            )  # fmt: skip
            before = {str(k): float(v) for k, v in data.get("dice_before", {}).items()}
            after = {str(k): float(v) for k, v in data.get("dice_after", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise PostprocessingError(f"{where}: malformed postprocessing file ({err!r}); determine it again.") from err
        return cls(steps, labels, trials, before, after)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form atomically."""
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Postprocessing:
        """Read a file written by :meth:`save`.

        Raises:
            PostprocessingError: If the file is missing, not JSON, or malformed.
        """
        path = Path(path)
        data = read_json_file(path, PostprocessingError, (
            f"postprocessing file {path} does not exist; write one with `nnseg postprocess determine PRED REF -o "
            f"{path}`."
        ))  # fmt: skip
        return cls.from_json(data, where=str(path))


def labels_of(spec: DatasetSpec) -> tuple[str, ...]:
    """The evaluated label / region keys of ``spec`` (what a :class:`Postprocessing` records)."""
    return tuple(label_key(label) for label in evaluated_labels(spec))


def steps_key(steps: Sequence[PostprocessingStep]) -> str:
    """A short human-readable description of steps, e.g. ``"largest of [1, 2]; largest of [1]"``."""
    return "; ".join(f"largest of {[_label_to_json(v) for v in step.labels]}" for step in steps) or "none"
