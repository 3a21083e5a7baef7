"""``Plans``: an nnU-Net v2 ``plans.json`` as a frozen value, read and written in nnU-Net's own schema."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg._hashing import content_hash
from nnseg._jsonfile import read_json_file
from nnseg._suggest import unknown_name_hint
from nnseg.errors import PlansError
from nnseg.planning._configuration import ConfigurationPlan
from nnseg.planning._fields import PLANS_CONTEXT_KEYS
from nnseg.planning._frozen import FrozenMap, freeze, to_jsonable
from nnseg.planning._resolve import convert_legacy_architecture, is_legacy, resolve_inheritance

__all__ = ["FORMAT_VERSION", "FORMAT_VERSION_KEY", "Plans"]

FORMAT_VERSION = 1
FORMAT_VERSION_KEY = "nnseg_format_version"
REQUIRED_KEYS = (
    "dataset_name",
    "plans_name",
    "original_median_spacing_after_transp",
    "original_median_shape_after_transp",
    "image_reader_writer",
    "transpose_forward",
    "transpose_backward",
    "configurations",
    "experiment_planner_used",
    "foreground_intensity_properties_per_channel",
)
OLD_INTENSITY_KEY = "foreground_intensity_properties_by_modality"


@dataclass(frozen=True, slots=True)
class Plans:
    """A whole plans file. ``plans["3d_fullres"]`` gives a resolved :class:`ConfigurationPlan`.

    Build one with :meth:`from_json` (an nnU-Net v2 plans dict) or :meth:`load`. The fields mirror the
    top-level keys of nnU-Net's ``plans.json``; ``configurations`` keeps each configuration exactly as stored
    (``inherits_from`` included), read-only.

    Args:
        dataset_name: Dataset name (``"Dataset001_Liver"``).
        plans_name: Plans name (``"nnUNetPlans"``).
        original_median_spacing_after_transp: Median fingerprint spacing, transposed.
        original_median_shape_after_transp: Median fingerprint shape after cropping, transposed.
        image_reader_writer: nnU-Net reader/writer class name (``"SimpleITKIO"``).
        transpose_forward: Axis permutation applied before preprocessing.
        transpose_backward: Its inverse.
        configurations: Configuration name -> raw configuration dict.
        experiment_planner_used: Name of the planner that made the plans.
        foreground_intensity_properties_per_channel: Fingerprint intensity statistics per channel.
        label_manager: nnU-Net label manager class name.
        extra: Unknown top-level keys, kept for a faithful round trip.
        source: Where the plans came from (a file path), used in error messages; not compared.

    Raises:
        PlansError: If the fields disagree or a configuration does not resolve.
    """

    dataset_name: str
    plans_name: str
    original_median_spacing_after_transp: tuple[float, ...]
    original_median_shape_after_transp: tuple[int, ...]
    image_reader_writer: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    configurations: Mapping[str, Mapping[str, Any]]
    experiment_planner_used: str
    foreground_intensity_properties_per_channel: Mapping[str, Mapping[str, float]]
    label_manager: str = "LabelManager"
    extra: Mapping[str, Any] = field(default_factory=FrozenMap)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("configurations", "foreground_intensity_properties_per_channel", "extra"):
            object.__setattr__(self, name, freeze(getattr(self, name)))
        for name, kind in (("original_median_spacing_after_transp", float), ("original_median_shape_after_transp", int),
                           ("transpose_forward", int), ("transpose_backward", int)):  # fmt: skip
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        if self.source is not None:
            object.__setattr__(self, "source", str(self.source))
        for name in self.configurations:
            self.configuration(name)

    def __repr__(self) -> str:
        return (
            f"Plans(dataset_name={self.dataset_name!r}, plans_name={self.plans_name!r}, "
            f"configurations={list(self.configurations)!r})"
        )

    def __getitem__(self, name: str) -> ConfigurationPlan:
        return self.configuration(name)

    def __contains__(self, name: object) -> bool:
        return name in self.configurations

    @property
    def configuration_names(self) -> tuple[str, ...]:
        """Names of all configurations, in file order."""
        return tuple(self.configurations)

    @property
    def where(self) -> str:
        """Description of these plans for messages: the source file, else the plans and dataset names."""
        return self.source or f"plans {self.plans_name!r} of {self.dataset_name!r}"

    def configuration(self, name: str) -> ConfigurationPlan:
        """Return configuration ``name`` with ``inherits_from`` resolved (child keys override parent keys).

        Raises:
            PlansError: If there is no such configuration (with a did-you-mean and the available names),
                the inheritance chain has a cycle or a missing parent, or a key is missing or malformed.
        """
        resolved = resolve_inheritance(self.configurations, name, where=self.where)
        if is_legacy(resolved):
            resolved = convert_legacy_architecture(resolved, name=name, where=self.where)
        return ConfigurationPlan.from_json(resolved, name=name, plans=self._context(), where=self.where)

    def _context(self) -> dict[str, Any]:
        return {key: to_jsonable(getattr(self, key)) for key in PLANS_CONTEXT_KEYS}

    def with_configurations(self, configurations: Mapping[str, ConfigurationPlan | Mapping[str, Any]]) -> Plans:
        """Return new plans with these configurations added or replaced.

        Args:
            configurations: Name -> a :class:`ConfigurationPlan` (stored flattened, without ``inherits_from``)
                or a raw configuration dict (e.g. ``{"inherits_from": "3d_fullres", "batch_size": 4}``).

        Raises:
            PlansError: If a plan was made for other plans-level facts (transposition, intensity statistics,
                reader, names), or a configuration does not resolve.
        """
        updated = {name: to_jsonable(raw) for name, raw in self.configurations.items()}
        for name, value in configurations.items():
            if isinstance(value, ConfigurationPlan):
                self._check_same_context(name, value)
                updated[name] = value.to_json()
            else:
                updated[name] = to_jsonable(value)
        return Plans(**{**self._field_values(), "configurations": updated})

    def replace_configuration(self, name: str, plan: ConfigurationPlan) -> Plans:
        """Return new plans in which the existing configuration ``name`` is ``plan``.

        Raises:
            PlansError: If there is no configuration ``name``, or ``plan`` belongs to other plans.
        """
        if name not in self.configurations:
            raise PlansError(
                f"no configuration {name!r} in {self.where}. {unknown_name_hint(name, self.configurations)}"
            )
        return self.with_configurations({name: plan})

    def _check_same_context(self, name: str, plan: ConfigurationPlan) -> None:
        ours = self._context()
        for key in PLANS_CONTEXT_KEYS:
            theirs = to_jsonable(getattr(plan, key))
            if content_hash(theirs) != content_hash(ours[key]):
                raise PlansError(
                    f"configuration {name!r} has {key}={theirs!r} but {self.where} has {ours[key]!r}; "
                    "a configuration must come from the same plans. Build it from these plans "
                    "(dataclasses.replace(plans[...], ...)) instead."
                )

    def _field_values(self) -> dict[str, Any]:
        names = (*REQUIRED_KEYS, "label_manager", "extra", "source")
        return {name: getattr(self, name) for name in names}

    def content_hash(self) -> str:
        """Return a 16-hex-digit SHA-256 of the canonical :meth:`to_json` (any change to the plans changes it)."""
        return content_hash(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """Return the ``plans.json`` content in nnU-Net v2's schema plus ``"nnseg_format_version"``.

        Tuples become lists and NumPy values Python values; nnU-Net ignores the extra key.
        """
        data = {key: to_jsonable(getattr(self, key)) for key in REQUIRED_KEYS}
        data["label_manager"] = self.label_manager
        order = (*REQUIRED_KEYS[:8], "experiment_planner_used", "label_manager", *REQUIRED_KEYS[9:])
        ordered = {key: data[key] for key in order}
        ordered.update(to_jsonable(self.extra))
        ordered[FORMAT_VERSION_KEY] = FORMAT_VERSION
        return ordered

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str | os.PathLike[str] | None = None) -> Plans:
        """Parse ``plans.json`` content: nnU-Net v2's schema, or nnseg's (the same plus a format version).

        Old nnU-Net v2 configurations (``UNet_class_name`` ... instead of ``architecture``) are converted
        when they are read, with a warning; the stored dicts keep their old keys.

        Args:
            data: The parsed JSON.
            source: Where it came from (file path), used in error messages.

        Raises:
            PlansError: If the content is not nnU-Net v2 plans, keys are missing or malformed, or a
                configuration does not resolve.
        """
        where = str(source) if source is not None else _describe(data)
        data = _check_format(data, where)
        values: dict[str, Any] = {key: data[key] for key in REQUIRED_KEYS}
        values["label_manager"] = data.get("label_manager", "LabelManager")
        known = {*REQUIRED_KEYS, "label_manager", FORMAT_VERSION_KEY}
        values["extra"] = {key: value for key, value in data.items() if key not in known}
        if not isinstance(values["configurations"], Mapping) or not all(
            isinstance(c, Mapping) for c in values["configurations"].values()
        ):
            raise PlansError(f"{where}: 'configurations' must map configuration names to dicts.")
        legacy = [name for name in values["configurations"] if "UNet_class_name" in values["configurations"][name]]
        try:
            plans = cls(**values, source=None if source is None else str(source))
        except (TypeError, ValueError) as err:
            if isinstance(err, PlansError):
                raise
            raise PlansError(f"{where}: malformed plans ({err}).") from err
        if legacy:
            warnings.warn(
                f"{where}: configuration(s) {legacy} use the old nnU-Net plans format; their architecture was "
                "rebuilt from the old keys. Re-plan the dataset to get a current plans file.",
                stacklevel=2,
            )
        return plans

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plans:
        """Read a ``plans.json`` file (nnU-Net v2's or nnseg's).

        Raises:
            PlansError: If the file is missing, is not valid JSON, or is not nnU-Net v2 plans.
        """
        path = Path(path)
        data = read_json_file(path, PlansError, (
            f"plans file {path} does not exist; plan the dataset first (nnseg plan / Planner().plan(...)) "
            "or pass the path of an existing plans.json."
        ))  # fmt: skip
        return cls.from_json(data, source=path)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically (nnU-Net can read the file)."""
        atomic_write_json(Path(path), self.to_json())


def _describe(data: Any) -> str:
    """Describe unsaved plans for messages by their names, when they have them."""
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("plans_name"), str)
        and isinstance(data.get("dataset_name"), str)
    ):
        return f"plans {data['plans_name']!r} of {data['dataset_name']!r}"
    return "plans"


def _check_format(data: Any, where: str) -> dict[str, Any]:
    """Return ``data`` as plain JSON if it is nnU-Net v2 plans content, else raise PlansError."""
    if not isinstance(data, Mapping):
        raise PlansError(f"{where}: expected a JSON object with nnU-Net v2 plans, got {type(data).__name__}.")
    data = to_jsonable(data)
    version = data.get(FORMAT_VERSION_KEY)
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION):
        raise PlansError(
            f"{where}: nnseg plans format version {version!r} is not supported (this nnseg reads up to "
            f"{FORMAT_VERSION}); upgrade nnseg."
        )
    if "plans_per_stage" in data:
        raise PlansError(
            f"{where}: this is an nnU-Net v1 plans file, which nnseg does not read; "
            "re-plan the dataset with nnseg or nnUNetv2_plan_experiment."
        )
    if OLD_INTENSITY_KEY in data and "foreground_intensity_properties_per_channel" not in data:
        data["foreground_intensity_properties_per_channel"] = data.pop(OLD_INTENSITY_KEY)
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if len(missing) > len(REQUIRED_KEYS) // 2:
        raise PlansError(
            f"{where}: not an nnU-Net v2 plans file (missing {missing}; found keys {sorted(data)}). "
            "Pass the <plans_name>.json written by planning, e.g. nnUNetPlans.json."
        )
    if missing:
        raise PlansError(
            f"{where}: plans lack key(s) {missing}; an nnU-Net v2 plans file has {list(REQUIRED_KEYS)}. "
            "Re-plan the dataset or add the missing keys."
        )
    return data
