"""``ConfigurationPlan``: one nnU-Net configuration (``2d``, ``3d_fullres``, ...) as a frozen value.

A ``ConfigurationPlan`` holds the keys of one entry of ``plans["configurations"]`` (inheritance already
resolved) plus the plans-level facts a configuration needs on its own (transposition, intensity statistics,
reader/writer, names), so ``plans["3d_fullres"]`` alone is enough to preprocess, train and predict.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg._hashing import content_hash
from nnseg._jsonfile import read_json_file
from nnseg.errors import PlansError
from nnseg.planning._fields import (
    CONFIGURATION_KEYS,
    CONTEXT_KEY,
    MEMORY_REPORT_KEY,
    NAME_KEY,
    PLANS_CONTEXT_KEYS,
    check_consistency,
    parse_configuration,
    parse_context,
)
from nnseg.planning._frozen import FrozenMap, freeze, to_jsonable

__all__ = ["ArchitecturePlan", "ConfigurationPlan", "MemoryReport"]


@dataclass(frozen=True, slots=True)
class ArchitecturePlan:
    """The network of a configuration, as nnU-Net stores it under ``configuration["architecture"]``.

    Args:
        network_class_name: Dotted class path, e.g.
            ``"dynamic_network_architectures.architectures.unet.PlainConvUNet"``.
        arch_kwargs: Constructor keyword arguments (read-only; lists are tuples, dicts are read-only
            mappings). Use :meth:`plain_arch_kwargs` for plain lists and dicts.
        kw_requires_import: Names of the ``arch_kwargs`` entries whose values are dotted paths to import
            (nnU-Net's ``_kw_requires_import``), e.g. ``("conv_op", "norm_op", "dropout_op", "nonlin")``.
        extra: Unknown keys of the architecture dict, kept for a faithful round trip.
    """

    network_class_name: str
    arch_kwargs: Mapping[str, Any]
    kw_requires_import: tuple[str, ...]
    extra: Mapping[str, Any] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_kwargs", freeze(self.arch_kwargs))
        object.__setattr__(self, "kw_requires_import", tuple(str(k) for k in self.kw_requires_import))
        object.__setattr__(self, "extra", freeze(self.extra))

    @property
    def num_stages(self) -> int:
        """Number of resolution stages (``n_stages``, else the length of ``strides``)."""
        if "n_stages" in self.arch_kwargs:
            return int(self.arch_kwargs["n_stages"])
        return len(self.arch_kwargs.get("strides", ()))

    def plain_arch_kwargs(self) -> dict[str, Any]:
        """Return ``arch_kwargs`` as plain dicts and lists (a fresh copy, safe to modify)."""
        return dict(to_jsonable(self.arch_kwargs))

    def to_json(self) -> dict[str, Any]:
        """Return nnU-Net's architecture dict."""
        data: dict[str, Any] = {
            "network_class_name": self.network_class_name,
            "arch_kwargs": to_jsonable(self.arch_kwargs),
            "_kw_requires_import": list(self.kw_requires_import),
        }
        data.update(to_jsonable(self.extra))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "architecture") -> ArchitecturePlan:
        """Parse nnU-Net's architecture dict.

        Raises:
            PlansError: If ``network_class_name`` or ``arch_kwargs`` is missing or malformed.
        """
        if not isinstance(data, Mapping):
            raise PlansError(f"{where}: 'architecture' must be a dict, got {type(data).__name__}.")
        missing = [k for k in ("network_class_name", "arch_kwargs") if k not in data]
        if missing:
            raise PlansError(
                f"{where}: 'architecture' lacks key(s) {missing}; expected 'network_class_name', "
                "'arch_kwargs' and '_kw_requires_import'. Re-run planning to regenerate the plans."
            )
        if not isinstance(data["arch_kwargs"], Mapping):
            raise PlansError(f"{where}: 'arch_kwargs' must be a dict, got {type(data['arch_kwargs']).__name__}.")
        known = {"network_class_name", "arch_kwargs", "_kw_requires_import"}
        return cls(
            network_class_name=str(data["network_class_name"]),
            arch_kwargs=data["arch_kwargs"],
            kw_requires_import=tuple(data.get("_kw_requires_import") or ()),
            extra={k: v for k, v in data.items() if k not in known},
        )


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """How a configuration's memory need compares with the target, as planned (and optionally measured).

    Args:
        estimate: The planner's estimate: nnU-Net's feature-map element count per sample for the patch
            (``compute_conv_feature_map_size``), the number compared against ``budget``.
        budget: The reference value it was compared against, already scaled to ``gpu_memory_gb``.
        gpu_memory_gb: The GPU memory target the budget corresponds to.
        measured_bytes: Measured memory of one training step, when it was measured.
        measured_device: Device the measurement ran on (``"cuda:0"``, ``"cpu"``).
        measurement_method: How it was measured (e.g. ``"torch.cuda.max_memory_allocated"``).
        note: Free-form remark (assumptions, why nothing was measured).
    """

    estimate: float
    budget: float
    gpu_memory_gb: float
    measured_bytes: int | None = None
    measured_device: str | None = None
    measurement_method: str | None = None
    note: str = ""

    @property
    def fraction_of_budget(self) -> float:
        """``estimate / budget`` (below 1 means the planner considered the patch to fit)."""
        return float(self.estimate) / float(self.budget) if self.budget else float("inf")

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON dict."""
        return {
            "estimate": float(self.estimate),
            "budget": float(self.budget),
            "gpu_memory_gb": float(self.gpu_memory_gb),
            "measured_bytes": None if self.measured_bytes is None else int(self.measured_bytes),
            "measured_device": self.measured_device,
            "measurement_method": self.measurement_method,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "memory report") -> MemoryReport:
        """Parse a dict written by :meth:`to_json`.

        Raises:
            PlansError: If ``estimate``, ``budget`` or ``gpu_memory_gb`` is missing or not a number.
        """
        if not isinstance(data, Mapping):
            raise PlansError(f"{where}: memory report must be a dict, got {type(data).__name__}.")
        missing = [k for k in ("estimate", "budget", "gpu_memory_gb") if k not in data]
        if missing:
            raise PlansError(f"{where}: memory report lacks key(s) {missing}.")
        try:
            measured = data.get("measured_bytes")
            return cls(
                estimate=float(data["estimate"]),
                budget=float(data["budget"]),
                gpu_memory_gb=float(data["gpu_memory_gb"]),
                measured_bytes=None if measured is None else int(measured),
                measured_device=data.get("measured_device"),
                measurement_method=data.get("measurement_method"),
                note=str(data.get("note", "")),
            )
        except (TypeError, ValueError) as err:
            raise PlansError(f"{where}: malformed memory report ({err}).") from err


@dataclass(frozen=True, slots=True)
class ConfigurationPlan:
    """Everything needed to preprocess, train and predict one configuration.

    Fields named like nnU-Net's configuration keys hold those values (sequences as tuples, dicts as
    read-only mappings). The plans-level facts (``transpose_forward`` ... ``dataset_name``) are copied
    from the :class:`~nnseg.planning.Plans` the configuration came from.

    Args:
        name: Configuration name (``"3d_fullres"``).
        data_identifier: Name of the preprocessed data folder (``"nnUNetPlans_3d_fullres"``).
        preprocessor_name: nnU-Net preprocessor class name (``"DefaultPreprocessor"``).
        batch_size: Training batch size.
        patch_size: Training patch, in transposed axis order.
        median_image_size_in_voxels: Median case shape at the target spacing, transposed.
        spacing: Target spacing, transposed.
        normalization_schemes: One normalisation class name per input channel.
        use_mask_for_norm: One flag per input channel.
        resampling_fn_data: Resampling function name for images.
        resampling_fn_data_kwargs: Its keyword arguments.
        resampling_fn_seg: Resampling function name for segmentations.
        resampling_fn_seg_kwargs: Its keyword arguments.
        resampling_fn_probabilities: Resampling function name for exported probabilities.
        resampling_fn_probabilities_kwargs: Its keyword arguments.
        architecture: The network.
        batch_dice: Whether Dice is computed over the whole batch.
        transpose_forward: Axis permutation applied before preprocessing (plans level).
        transpose_backward: Its inverse (plans level).
        foreground_intensity_properties_per_channel: Fingerprint statistics per channel (``"0"`` ->
            ``{"mean": ..., "percentile_00_5": ...}``); parameterise CT normalisation (plans level).
        image_reader_writer: nnU-Net reader/writer class name (plans level).
        plans_name: Name of the plans (plans level).
        dataset_name: Dataset name (plans level).
        next_stage: Cascade successor(s), if any.
        previous_stage: Cascade predecessor, if any.
        memory_report: Planner memory estimate, stored in the JSON under ``"nnseg_memory_report"``.
        extra: Unknown configuration keys, kept for a faithful round trip.
    """

    name: str
    data_identifier: str
    preprocessor_name: str
    batch_size: int
    patch_size: tuple[int, ...]
    median_image_size_in_voxels: tuple[float, ...]
    spacing: tuple[float, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    resampling_fn_data: str
    resampling_fn_data_kwargs: Mapping[str, Any]
    resampling_fn_seg: str
    resampling_fn_seg_kwargs: Mapping[str, Any]
    resampling_fn_probabilities: str
    resampling_fn_probabilities_kwargs: Mapping[str, Any]
    architecture: ArchitecturePlan
    batch_dice: bool
    # plans-level facts copied in, so a configuration stands alone
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    foreground_intensity_properties_per_channel: Mapping[str, Mapping[str, float]]
    image_reader_writer: str
    plans_name: str
    dataset_name: str
    # optional
    next_stage: str | tuple[str, ...] | None = None
    previous_stage: str | None = None
    memory_report: MemoryReport | None = None
    extra: Mapping[str, Any] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        for name in ("resampling_fn_data_kwargs", "resampling_fn_seg_kwargs", "resampling_fn_probabilities_kwargs",
                     "foreground_intensity_properties_per_channel", "extra"):  # fmt: skip
            object.__setattr__(self, name, freeze(getattr(self, name)))
        for name, kind in (("patch_size", int), ("median_image_size_in_voxels", float), ("spacing", float),
                           ("normalization_schemes", str), ("use_mask_for_norm", bool),
                           ("transpose_forward", int), ("transpose_backward", int)):  # fmt: skip
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        if isinstance(self.next_stage, list | tuple):
            object.__setattr__(self, "next_stage", tuple(str(s) for s in self.next_stage))
        check_consistency(self)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions of the network (2 or 3, from ``patch_size``)."""
        return len(self.patch_size)

    @property
    def is_2d(self) -> bool:
        """Whether this is a 2-D configuration."""
        return self.ndim == 2

    @property
    def num_stages(self) -> int:
        """Number of resolution stages of the network."""
        return self.architecture.num_stages

    @property
    def next_stages(self) -> tuple[str, ...]:
        """``next_stage`` as a tuple (empty when there is none)."""
        if self.next_stage is None:
            return ()
        return (self.next_stage,) if isinstance(self.next_stage, str) else tuple(self.next_stage)

    def preprocessing_hash(self) -> str:
        """Return a 16-hex-digit hash of exactly the fields that determine the preprocessed arrays.

        Two configurations with equal hashes produce identical preprocessed data and may share a store
        (e.g. the default plans and ResEnc-L plans at the same spacing); patch, batch size and network do
        not enter. The fields: transpose_forward, spacing, normalization_schemes, use_mask_for_norm,
        resampling_fn_data(+kwargs), resampling_fn_seg(+kwargs), foreground intensity properties,
        preprocessor_name and image_reader_writer.
        """
        return content_hash(self.preprocessing_fields())

    def preprocessing_fields(self) -> dict[str, Any]:
        """Return the fields :meth:`preprocessing_hash` covers, as a JSON dict."""
        names = ("transpose_forward", "spacing", "normalization_schemes", "use_mask_for_norm",
                 "resampling_fn_data", "resampling_fn_data_kwargs", "resampling_fn_seg", "resampling_fn_seg_kwargs",
                 "foreground_intensity_properties_per_channel", "preprocessor_name", "image_reader_writer")  # fmt: skip
        return {name: to_jsonable(getattr(self, name)) for name in names}

    def to_json(self, *, standalone: bool = False) -> dict[str, Any]:
        """Return nnU-Net's configuration dict (what ``plans["configurations"][name]`` holds).

        Args:
            standalone: Also store the name and the plans-level facts (under ``"nnseg_configuration_name"``
                and ``"nnseg_plans_context"``) so :meth:`from_json` can rebuild the plan without its plans.
        """
        data: dict[str, Any] = {key: to_jsonable(getattr(self, key)) for key in CONFIGURATION_KEYS}
        data["architecture"] = self.architecture.to_json()
        data["batch_dice"] = bool(self.batch_dice)
        if self.next_stage is not None:
            data["next_stage"] = to_jsonable(self.next_stage)
        if self.previous_stage is not None:
            data["previous_stage"] = self.previous_stage
        data.update(to_jsonable(self.extra))
        if self.memory_report is not None:
            data[MEMORY_REPORT_KEY] = self.memory_report.to_json()
        if standalone:
            data[NAME_KEY] = self.name
            data[CONTEXT_KEY] = {key: to_jsonable(getattr(self, key)) for key in PLANS_CONTEXT_KEYS}
        return data

    @classmethod
    def from_json(
        cls,
        data: Mapping[str, Any],
        *,
        name: str | None = None,
        plans: Mapping[str, Any] | None = None,
        where: str = "configuration",
    ) -> ConfigurationPlan:
        """Build a plan from a resolved nnU-Net configuration dict.

        Args:
            data: The configuration dict (no ``inherits_from`` left to resolve; old-format architecture keys
                must already be converted, which :class:`~nnseg.planning.Plans` does).
            name: Configuration name; defaults to the ``"nnseg_configuration_name"`` stored by a standalone
                :meth:`to_json`.
            plans: A mapping with the plans-level keys (a plans.json dict works); defaults to the
                ``"nnseg_plans_context"`` stored by a standalone :meth:`to_json`.
            where: Description of the source for error messages.

        Raises:
            PlansError: If a key is missing or has the wrong type.
        """
        name = name if name is not None else data.get(NAME_KEY)
        if name is None:
            raise PlansError(f"{where}: no configuration name given; pass name=... (e.g. '3d_fullres').")
        context = plans if plans is not None else data.get(CONTEXT_KEY)
        if context is None:
            raise PlansError(
                f"{where}: configuration {name!r} has no plans-level facts; pass plans=<the plans.json dict> "
                "or load it through Plans.load(...)[name]."
            )
        values = parse_configuration(data, name=str(name), where=where)
        values.update(parse_context(context, where=where))
        values["architecture"] = ArchitecturePlan.from_json(data["architecture"], where=f"{where} [{name}]")
        report = data.get(MEMORY_REPORT_KEY)
        if report is not None:
            values["memory_report"] = MemoryReport.from_json(report, where=f"{where} [{name}]")
        return cls(**values)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the standalone JSON (``to_json(standalone=True)``) atomically."""
        atomic_write_json(Path(path), self.to_json(standalone=True))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConfigurationPlan:
        """Read a file written by :meth:`save`.

        Raises:
            PlansError: If the file is missing, not JSON, or not a standalone configuration.
        """
        path = Path(path)
        data = read_json_file(
            path, PlansError, f"configuration file {path} does not exist; write one with ConfigurationPlan.save."
        )
        if not isinstance(data, dict):
            raise PlansError(f"{path}: expected a JSON object, got {type(data).__name__}.")
        return cls.from_json(data, where=str(path))
