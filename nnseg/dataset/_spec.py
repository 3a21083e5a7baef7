"""``DatasetSpec``: the parsed and validated content of an nnU-Net ``dataset.json``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg._jsonfile import read_json_file
from nnseg.errors import DatasetError

__all__ = ["DatasetSpec", "LabelValue"]

LabelValue = int | tuple[int, ...]
"""A label in ``dataset.json``: one int, or a tuple of ints for a region."""

REQUIRED_KEYS = ("labels", "numTraining", "file_ending")


def _parse_label_value(name: str, value: Any, where: str) -> LabelValue:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(value):
        return int(value)
    if isinstance(value, list | tuple) and value and all(is_int(v) for v in value):
        return int(value[0]) if len(value) == 1 else tuple(int(v) for v in value)
    raise DatasetError(
        f"{where}: label {name!r} has value {value!r}; expected an int (e.g. 1) or a non-empty list of ints "
        "for a region (e.g. [1, 2]). Fix the 'labels' entry in dataset.json."
    )


def _parse_channels(channels: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(channels, Mapping):
        raise DatasetError(f"{source}: {key!r} must map channel index to name; got {channels!r}.")
    try:
        order = sorted(channels, key=int)
    except ValueError:
        raise DatasetError(
            f'{source}: {key!r} keys must be channel indices "0", "1", ...; got {list(channels)}.'
        ) from None
    if [int(k) for k in order] != list(range(len(order))):
        raise DatasetError(f"{source}: {key!r} keys must be 0..{len(order) - 1}; got {order}.")
    return tuple(str(channels[k]) for k in order)


def _parse_regions_class_order(value: Any, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DatasetError(f"{source}: 'regions_class_order' must be a list of ints; got {value!r}.")
    return tuple(int(v) for v in value)


def _reject_v1_labels(labels: Mapping[str, Any], source: str) -> None:
    """Explain the nnU-Net v1 form ``{"0": "background", "1": "liver"}`` instead of failing on one value."""
    if labels and all(str(k).isdigit() and isinstance(v, str) for k, v in labels.items()):
        raise DatasetError(
            f"{source}: 'labels' maps values to names ({dict(labels)!r}), the nnU-Net v1 form; nnU-Net v2 maps "
            'names to values, e.g. {"background": 0, "liver": 1}. Swap keys and values (or convert the dataset '
            "with nnUNetv2_convert_old_nnUNet_dataset)."
        )


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """What a dataset contains: channels, labels, file ending, number of training cases.

    Args:
        channel_names: One name per input channel, in channel order. The name selects the normalisation
            (``"CT"`` gives CT normalisation, ``"noNorm"`` none, ``"zscore"`` or anything else z-score).
        labels: Label name to value, in file order. Values are ints, or tuples of ints for regions.
            ``"background"`` must be 0; an optional ``"ignore"`` label must be the highest value.
        num_training: ``numTraining``: the number of training cases.
        file_ending: File ending of every image and label file, e.g. ``".nii.gz"``.
        regions_class_order: Required when any label is a region: the order in which regions are painted.
        extra: Every other key of ``dataset.json`` (name, description, ...), kept for a faithful round trip.

    Raises:
        DatasetError: If the labels break nnU-Net's rules (see :meth:`from_dict`).
    """

    channel_names: tuple[str, ...]
    labels: Mapping[str, LabelValue]
    num_training: int
    file_ending: str
    regions_class_order: tuple[int, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: str = field(default="DatasetSpec", compare=False)

    def __post_init__(self) -> None:
        self._validate_labels()

    # ----------------------------------------------------------------------------------- validation
    def _validate_labels(self) -> None:
        where = self.source
        if not self.channel_names:
            raise DatasetError(
                f'{where}: \'channel_names\' is empty; expected at least one channel, e.g. {{"0": "CT"}}.'
            )
        if self.labels.get("background") != 0:
            raise DatasetError(
                f'{where}: labels must contain "background": 0; got background = '
                f"{self.labels.get('background')!r}. Add \"background\": 0 to 'labels'."
            )
        ignore = self.labels.get("ignore")
        if ignore is not None and not isinstance(ignore, int):
            raise DatasetError(f"{where}: the ignore label must be a single int; got {ignore!r}.")
        if self.has_regions:
            self._validate_regions()
            values = list(self.all_labels)
        else:
            values = sorted(v for v in self.labels.values() if isinstance(v, int))
            if len(set(values)) != len(values):
                raise DatasetError(
                    f"{where}: label values {values} contain duplicates; every label needs its own value."
                )
        if values != list(range(len(values))):
            raise DatasetError(
                f"{where}: label values must be consecutive integers starting at 0 (the ignore label included); "
                f"got {values}. Expected {list(range(len(values)))}; renumber the labels and the label files."
            )
        if ignore is not None and ignore != values[-1]:
            raise DatasetError(f"{where}: the ignore label must have the highest value ({values[-1]}); got {ignore}.")

    def _validate_regions(self) -> None:
        where = self.source
        if not self.regions_class_order:
            raise DatasetError(
                f"{where}: labels define regions (lists of ints) but 'regions_class_order' is missing; "
                "expected a list with one label per foreground region, e.g. [1, 2, 3]."
            )
        if len(self.regions_class_order) != len(self.foreground_regions):
            raise DatasetError(
                f"{where}: 'regions_class_order' has {len(self.regions_class_order)} entries but there are "
                f"{len(self.foreground_regions)} foreground regions; expected one entry per region."
            )
        unknown = sorted(set(self.regions_class_order) - set(self.foreground_labels))
        if unknown:
            raise DatasetError(
                f"{where}: 'regions_class_order' {list(self.regions_class_order)} contains {unknown}, which is not a "
                f"foreground label value; expected values from {list(self.foreground_labels)}."
            )

    # ----------------------------------------------------------------------------------- derived views
    @property
    def num_channels(self) -> int:
        """Number of input channels."""
        return len(self.channel_names)

    @property
    def ignore_label(self) -> int | None:
        """The ignore label's value, or None."""
        value = self.labels.get("ignore")
        return value if isinstance(value, int) else None

    @property
    def has_regions(self) -> bool:
        """Whether training is region-based (any label value is a tuple)."""
        return any(isinstance(v, tuple) for k, v in self.labels.items() if k != "ignore")

    @property
    def all_labels(self) -> tuple[int, ...]:
        """Every label value that may appear in a label file (background and ignore included), sorted."""
        values: set[int] = set()
        for value in self.labels.values():
            values.update(value if isinstance(value, tuple) else (value,))
        return tuple(sorted(values))

    @property
    def foreground_labels(self) -> tuple[int, ...]:
        """Label values other than background and ignore, sorted."""
        return tuple(v for v in self.all_labels if v != 0 and v != self.ignore_label)

    @property
    def foreground_regions(self) -> tuple[tuple[int, ...], ...]:
        """Each non-background label or region as a tuple of label values, in file order."""
        regions = []
        for name, value in self.labels.items():
            if name in ("background", "ignore"):
                continue
            regions.append(value if isinstance(value, tuple) else (value,))
        return tuple(regions)

    @property
    def num_segmentation_heads(self) -> int:
        """Output channels of a network: one per region, or one per label including background."""
        if self.has_regions:
            return len(self.foreground_regions)
        return len(self.all_labels) - (1 if self.ignore_label is not None else 0)

    # ----------------------------------------------------------------------------------- JSON
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "dataset.json") -> DatasetSpec:
        """Parse the content of a ``dataset.json``.

        Accepts ``channel_names`` or the legacy ``modality`` key.

        Args:
            data: The decoded JSON object.
            source: Where the data came from, used in error messages.

        Raises:
            DatasetError: If a required key is missing or a value breaks nnU-Net's rules.
        """
        if not isinstance(data, Mapping):
            raise DatasetError(f"{source}: expected a JSON object; got {type(data).__name__}.")
        channel_key = "modality" if "modality" in data and "channel_names" not in data else "channel_names"
        missing = [k for k in (channel_key, *REQUIRED_KEYS) if k not in data]
        if missing:
            raise DatasetError(
                f"{source}: missing required key(s) {', '.join(repr(k) for k in missing)}; a dataset.json needs "
                "'channel_names' (or legacy 'modality'), 'labels', 'numTraining' and 'file_ending'."
            )
        channel_names = _parse_channels(data[channel_key], channel_key, source)
        if not isinstance(data["labels"], Mapping):
            raise DatasetError(f"{source}: 'labels' must map name to value; got {data['labels']!r}.")
        _reject_v1_labels(data["labels"], source)
        labels = {str(k): _parse_label_value(str(k), v, source) for k, v in data["labels"].items()}
        num_training = data["numTraining"]
        if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 0:
            raise DatasetError(f"{source}: 'numTraining' must be a non-negative int; got {num_training!r}.")
        ending = data["file_ending"]
        if not isinstance(ending, str) or not ending.startswith("."):
            raise DatasetError(f"{source}: 'file_ending' must be a string such as \".nii.gz\"; got {ending!r}.")
        regions_class_order = _parse_regions_class_order(data.get("regions_class_order"), source)
        known = {channel_key, *REQUIRED_KEYS, "regions_class_order"}
        return cls(
            channel_names=channel_names,
            labels=labels,
            num_training=int(num_training),
            file_ending=ending,
            regions_class_order=regions_class_order,
            extra={k: v for k, v in data.items() if k not in known},
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the ``dataset.json`` content (nnU-Net v2 keys)."""
        data: dict[str, Any] = {
            "channel_names": {str(i): name for i, name in enumerate(self.channel_names)},
            "labels": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.labels.items()},
            "numTraining": self.num_training,
            "file_ending": self.file_ending,
        }
        if self.regions_class_order is not None:
            data["regions_class_order"] = list(self.regions_class_order)
        data.update(self.extra)
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DatasetSpec:
        """Read a ``dataset.json`` file.

        Raises:
            DatasetError: If the file is missing, is not valid JSON, or its content is invalid.
        """
        path = Path(path)
        data = read_json_file(path, DatasetError, (
            f"{path} does not exist; every nnU-Net raw dataset folder needs a dataset.json with "
            "'channel_names', 'labels', 'numTraining' and 'file_ending'."
        ))  # fmt: skip
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ``dataset.json`` atomically."""
        atomic_write_json(Path(path), self.to_dict())
