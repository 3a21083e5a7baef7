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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.dataset import DatasetSpec
from nnseg.errors import PostprocessingError
from nnseg.evaluation._metrics import evaluated_labels, label_key
from nnseg.postprocessing._determine import decide
from nnseg.postprocessing._steps import PostprocessingStep, Trial, apply_steps, label_from_json, labels_of

__all__ = ["Postprocessing", "determine_postprocessing"]

FORMAT_VERSION = 1


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
        return apply_steps(self.steps, segmentation)

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
                "nnU-Net's own postprocessing files are not read (nnseg never loads pickled files): determine it again with "
                "`nnseg postprocess determine`."
            )
        try:
            steps = tuple(PostprocessingStep.from_json(s, where=where) for s in data["steps"])
            labels = tuple(str(key) for key in data["labels"])
            trials = tuple(
                Trial(tuple(label_from_json(v, where) for v in t["labels"]), str(t["criterion"]),
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


def determine_postprocessing(
    pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str], spec: DatasetSpec,
    out_dir: str | os.PathLike[str], *, allow_missing: bool = False, num_workers: int = 1,
) -> Postprocessing:  # fmt: skip
    """Decide which keep-largest-component steps improve Dice on ``pred_dir``; write the postprocessed folder.

    The rule is described in :mod:`nnseg.postprocessing._determine`.

    Args:
        pred_dir: Predicted label maps ``<case><file_ending>`` (e.g. a cross-validation folder).
        ref_dir: Reference label maps of the same names (e.g. the raw ``labelsTr``).
        spec: The dataset's labels (file ending, labels or regions, ignore label).
        out_dir: Receives every prediction with the accepted steps applied, and its ``summary.json``.
        allow_missing: Decide on the predicted cases only when some references have no prediction.
        num_workers: Worker processes for reading and evaluating.

    Returns:
        The decision; ``.save(path)`` writes it as JSON.

    Raises:
        PostprocessingError: If a folder is missing, a prediction has no reference, or (without
            ``allow_missing``) a reference has no prediction. Nothing is written then.
        ImageIOError: If a file cannot be read.
    """
    accepted, trials, before, after = decide(pred_dir, ref_dir, spec, out_dir, allow_missing=allow_missing,
                                             num_workers=num_workers)  # fmt: skip
    return Postprocessing(accepted, labels_of(spec), trials, before, after)
