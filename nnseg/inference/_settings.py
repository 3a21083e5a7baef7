"""``InferenceSettings``: every option of prediction in one frozen, validated object.

The command line builds one, :class:`~nnseg.inference.Predictor` keeps it and passes it to the sliding window
(:func:`~nnseg.inference.predict_logits`); a new option is a new field here, not a new argument in three
layers. :meth:`InferenceSettings.manifest_json` is what a prediction folder records of them (the settings that
change the outputs), so parts predicted with other settings never mix.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nnseg._checks import parse_bool, parse_choice, parse_device, parse_int, parse_number, parse_optional_bool
from nnseg.errors import ConfigError
from nnseg.inference._accumulate import ACCUMULATORS, Accumulator

__all__ = ["SETTINGS_VERSION", "InferenceSettings", "settings_from_legacy", "upgrade_manifest_settings"]

SETTINGS_VERSION = 1
_OWNER = "InferenceSettings"
DEFAULT_TILE_BATCH_SIZE = 4
"""Network inputs per forward pass when ``tile_batch_size`` is None: on a 2-core CPU 1.6x (no TTA) to 2.7x
(TTA) faster than one at a time, at nnU-Net's peak memory (benchmarks/bench_predict.py)."""


def _device(name: str, value: Any) -> str:
    return parse_device(_OWNER, name, value)


@dataclass(frozen=True)
class InferenceSettings:
    """How to predict: tiling, test-time mirroring, blending, batching, devices and outputs.

    Args:
        tile_step_size: Step between tiles as a fraction of the patch, in ``(0, 1]`` (nnU-Net: 0.5).
        use_mirroring: Mirror test-time augmentation (nnU-Net: on).
        mirror_axes: Spatial axes (0-based) to mirror; None uses the model's (every axis of the patch when
            there is no model); ``()`` mirrors nothing.
        tile_batch_size: Network inputs (tiles and their mirrored copies) per forward pass, halved on an
            out-of-memory error; None: 4; 1: as nnU-Net.
        accumulator: How overlapping tiles are combined: ``"gaussian"`` (float32 sums), ``"nnunet_float16"``
            (nnU-Net's float16 sums), ``"constant"`` (plain average), or an
            :class:`~nnseg.inference.Accumulator` instance (each case uses a copy of it).
        device: Where the network runs (``"cpu"``, ``"cuda:0"``...).
        fallback_device: Where the sums go when ``device`` runs out of memory holding them; None: fail.
        accumulate_on_device: Keep the sums on ``device``; None means on CUDA only.
        amp: Autocast for the network; None means on CUDA only.
        optimize: Run an equivalent, faster network (instance norm as group norm, channels-last on the CPU);
            the logits agree to float rounding.
        save_probabilities: A folder run also writes ``<case>.npz`` and ``<case>.json``.

    Raises:
        ConfigError: ``"InferenceSettings: <field> must be ...; got <value>. <fix>"`` for a bad value.

    Example:
        >>> settings = InferenceSettings(tile_step_size=0.5, device="cuda:0", tile_batch_size=2)
        >>> exact = settings.with_nnunet_numerics()     # nnU-Net's segmentations voxel for voxel
        >>> InferenceSettings.from_json(settings.to_json()) == settings
        True
    """

    tile_step_size: float = 0.5
    use_mirroring: bool = True
    mirror_axes: tuple[int, ...] | None = None
    tile_batch_size: int | None = None
    accumulator: str | Accumulator = "gaussian"
    device: str | torch.device = "cpu"
    fallback_device: str | torch.device | None = "cpu"
    accumulate_on_device: bool | None = None
    amp: bool | None = None
    optimize: bool = True
    save_probabilities: bool = False

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "tile_step_size", parse_number(_OWNER, "tile_step_size", self.tile_step_size, low=0, high=1,
                                                 low_open=True, default=0.5))  # fmt: skip
        parse_bool(_OWNER, "use_mirroring", self.use_mirroring)
        if self.mirror_axes is not None:
            put(self, "mirror_axes", _parse_axes(self.mirror_axes))
        if self.tile_batch_size is not None:
            parse_int(_OWNER, "tile_batch_size", self.tile_batch_size, minimum=1)
        put(self, "accumulator", _parse_accumulator(self.accumulator))
        put(self, "device", _device("device", self.device))
        if self.fallback_device is not None:
            put(self, "fallback_device", _device("fallback_device", self.fallback_device))
        parse_optional_bool(_OWNER, "accumulate_on_device", self.accumulate_on_device)
        parse_optional_bool(_OWNER, "amp", self.amp)
        parse_bool(_OWNER, "optimize", self.optimize)
        parse_bool(_OWNER, "save_probabilities", self.save_probabilities)

    # ------------------------------------------------------------------------------------------ derived
    @property
    def torch_device(self) -> torch.device:
        """:attr:`device` as a ``torch.device``."""
        return torch.device(self.device)

    @property
    def batch_size(self) -> int:
        """:attr:`tile_batch_size`, or the default of 4 when it is None."""
        return DEFAULT_TILE_BATCH_SIZE if self.tile_batch_size is None else self.tile_batch_size

    @property
    def accumulator_prototype(self) -> Accumulator:
        """The accumulator instance (names are resolved when the settings are made)."""
        if not isinstance(self.accumulator, Accumulator):  # invariant: __post_init__ resolved it
            raise ConfigError(f"{_OWNER}: accumulator {self.accumulator!r} was not resolved")
        return self.accumulator

    def new_accumulator(self) -> Accumulator:
        """A fresh copy of the accumulator for one case."""
        return copy.copy(self.accumulator_prototype)

    def resolved_mirror_axes(self, default: Sequence[int]) -> tuple[int, ...]:
        """The axes to mirror: none without mirroring, else :attr:`mirror_axes` or ``default`` (the model's)."""
        if not self.use_mirroring:
            return ()
        return self.mirror_axes if self.mirror_axes is not None else tuple(int(a) for a in default)

    def with_nnunet_numerics(self) -> InferenceSettings:
        """A copy that predicts as nnU-Net v2 does, voxel for voxel (what ``--nnunet-numerics`` sets).

        Float16 Gaussian blending, one network input per forward pass and the network as built (slower).
        """
        return dataclasses.replace(self, accumulator="nnunet_float16", tile_batch_size=1, optimize=False)

    # ------------------------------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """Every field as JSON (the accumulator by its name)."""
        data: dict[str, Any] = {"format_version": SETTINGS_VERSION}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            data[item.name] = list(value) if isinstance(value, tuple) else value
        data["accumulator"] = self.accumulator_prototype.name
        return data

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, accumulators: Mapping[str, Accumulator] | None = None
    ) -> InferenceSettings:
        """Parse :meth:`to_json` output; missing fields take their defaults.

        Args:
            data: The JSON object.
            accumulators: Custom accumulators by name, for settings saved with one.

        Raises:
            ConfigError: For unknown fields, a newer format, or bad values.
        """
        version = data.get("format_version", SETTINGS_VERSION)
        if not isinstance(version, int) or version > SETTINGS_VERSION:
            raise ConfigError(f"{_OWNER}: format_version {version!r} is newer than this nnseg reads "
                              f"({SETTINGS_VERSION}); upgrade nnseg.")  # fmt: skip
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"format_version"})
        if unknown:
            raise ConfigError(f"{_OWNER}: unknown field(s) {unknown}; expected some of {sorted(names)}. "
                              "Remove them.")  # fmt: skip
        values = {key: value for key, value in data.items() if key in names}
        if "mirror_axes" in values and isinstance(values["mirror_axes"], list):
            values["mirror_axes"] = tuple(values["mirror_axes"])
        name = values.get("accumulator")
        if accumulators and isinstance(name, str) and name in accumulators:
            values["accumulator"] = accumulators[name]
        return cls(**values)

    def manifest_json(self, model_mirror_axes: Sequence[int]) -> dict[str, Any]:
        """The settings that change the outputs, as a prediction folder's manifests record them."""
        return {"mirror_axes": list(self.resolved_mirror_axes(model_mirror_axes)),
                "tile_step_size": self.tile_step_size, "accumulator": self.accumulator_prototype.name,
                "save_probabilities": self.save_probabilities}  # fmt: skip


def _parse_axes(value: Any) -> tuple[int, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"{_OWNER}: mirror_axes must be None or a sequence of spatial axes such as (0, 1, 2); "
                          f"got {value!r}. Pass mirror_axes=None to use the model's.")  # fmt: skip
    axes = tuple(parse_int(_OWNER, "mirror_axes", axis, minimum=0, maximum=2) for axis in value)
    if len(set(axes)) != len(axes):
        raise ConfigError(f"{_OWNER}: mirror_axes must not repeat an axis; got {value!r}. List each axis once.")
    return axes


def _parse_accumulator(value: Any) -> Accumulator:
    if isinstance(value, Accumulator):
        return value
    if isinstance(value, str):
        return ACCUMULATORS[parse_choice(_OWNER, "accumulator", value, ACCUMULATORS)]()
    raise ConfigError(f"{_OWNER}: accumulator must be one of {', '.join(map(repr, ACCUMULATORS))} or an "
                      f"Accumulator instance; got {value!r}. Pass a name or an instance.")  # fmt: skip


# ---------------------------------------------------------------------------------------------- old options
_LEGACY_NAMES = {"step_size": "tile_step_size", "batch_size": "tile_batch_size", "device": "device",
                 "use_mirroring": "use_mirroring", "amp": "amp", "accumulate_on_device": "accumulate_on_device",
                 "optimize": "optimize", "mirror_axes": "mirror_axes"}  # fmt: skip
_LEGACY_EXTRA = {"use_gaussian", "accumulation_dtype"}


def settings_from_legacy(
    owner: str, settings: InferenceSettings | None, options: Mapping[str, Any], *, allowed: set[str],
    base: InferenceSettings | None = None, stacklevel: int = 3,
) -> InferenceSettings:  # fmt: skip
    """The settings of a call that may use the keyword arguments of nnseg 0.x (deprecated).

    Args:
        owner: The function, as messages name it.
        settings: The ``settings`` argument.
        options: The other keyword arguments given.
        allowed: The old keyword names ``owner`` accepted.
        base: The settings the old keywords modify (default: ``InferenceSettings()``).
        stacklevel: Where the DeprecationWarning points.

    Raises:
        TypeError: For a keyword ``owner`` never accepted.
        ConfigError: If both ``settings`` and old keywords are given, or an old value is invalid.
    """
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s) {unknown}")
    if not options:
        return settings if settings is not None else (base or InferenceSettings())
    if settings is not None:
        raise ConfigError(f"{owner}: pass either settings=InferenceSettings(...) or the deprecated keyword(s) "
                          f"{sorted(options)}, not both. Move them into the settings.")  # fmt: skip
    changes = {_LEGACY_NAMES[key]: value for key, value in options.items() if key in _LEGACY_NAMES}
    if "accumulation_dtype" in options or "use_gaussian" in options:
        changes["accumulator"] = _legacy_accumulator(owner, options)
    result = dataclasses.replace(base or InferenceSettings(), **changes)  # bad values raise before the warning
    new = ", ".join(
        f"{name}=..." for name in dict.fromkeys(_LEGACY_NAMES.get(k, "accumulator") for k in sorted(options))
    )
    warnings.warn(f"{owner}: the keyword argument(s) {sorted(options)} are deprecated and will be removed in the "
                  f"next release; pass settings=InferenceSettings({new}) instead.", DeprecationWarning,
                  stacklevel=stacklevel)  # fmt: skip
    return result


def _legacy_accumulator(owner: str, options: Mapping[str, Any]) -> str:
    dtype = options.get("accumulation_dtype", torch.float32)
    gaussian = options.get("use_gaussian", True)
    if dtype not in (torch.float32, torch.float16):
        raise ConfigError(f"{owner}: accumulation_dtype must be torch.float32 or torch.float16; got {dtype}. "
                          "Pass settings=InferenceSettings(accumulator='gaussian') (float32) instead.")  # fmt: skip
    if not gaussian and dtype == torch.float16:
        raise ConfigError(f"{owner}: use_gaussian=False with accumulation_dtype=torch.float16 is no longer "
                          "supported; pass settings=InferenceSettings(accumulator='constant') (float32).")  # fmt: skip
    return "nnunet_float16" if dtype == torch.float16 else ("gaussian" if gaussian else "constant")


def upgrade_manifest_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A part manifest's settings in the current form (manifests of nnseg 0.x name them differently)."""
    data = dict(settings)
    if "accumulator" not in data and "accumulation_dtype" in data:
        dtype = str(data.pop("accumulation_dtype"))
        gaussian = bool(data.pop("use_gaussian", True))
        data["accumulator"] = "nnunet_float16" if dtype == "torch.float16" else ("gaussian" if gaussian else "constant")
    if "step_size" in data and "tile_step_size" not in data:
        data["tile_step_size"] = data.pop("step_size")
    return data
