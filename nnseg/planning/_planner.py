"""``Planner``: nnU-Net v2's experiment planning (2d, 3d_fullres, 3d_lowres + cascade) as one configurable value.

The planner is a frozen dataclass whose fields are nnU-Net's tuning constants; the residual-encoder
presets (:mod:`nnseg.planning._presets`) are the same planner with other field values. The numeric
rules live in :mod:`nnseg.planning._spacing` and :mod:`nnseg.planning._topology`, the dataset checks and
the plans-schema output in :mod:`nnseg.planning._plan_schema`; this module fits patches to the budget,
searches the 3d_lowres spacing and assembles the plans.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from nnseg._checks import parse_choice, parse_int, parse_number
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError, PlanningError
from nnseg.fingerprint import Fingerprint
from nnseg.planning import _spacing as spacing_rules
from nnseg.planning._configuration import MemoryReport
from nnseg.planning._plan_schema import (
    NETWORKS,
    PLAIN_CONV_UNET,
    RESIDUAL_ENCODER_UNET,
    DatasetFacts,
    Fit,
    architecture_json,
    configuration_json,
    dataset_facts,
    default_dataset_name,
    reader_writer,
)
from nnseg.planning._plans import Plans
from nnseg.planning._topology import (
    Floats,
    Topology,
    feature_map_size,
    features_per_stage,
    initial_patch_size,
    pooling_topology,
    repeat_last,
    shrink_patch,
)

__all__ = ["PLAIN_CONV_UNET", "RESIDUAL_ENCODER_UNET", "Planner", "ShrinkCondition"]

logger = logging.getLogger(__name__)

ShrinkCondition = Literal["two_samples", "reference_batch"]
"""When the patch is small enough: ``"two_samples"`` (nnU-Net's default planner: a batch of two fits the
budget) or ``"reference_batch"`` (ResEnc planners: the reference batch size fits)."""

_LOWRES_SPACING_FACTOR = 1.03
_LOWRES_MIN_SHRINK = 2.0
_POSITIVE_FIELDS = ("reference_value_3d", "reference_value_2d", "reference_gb", "anisotropy_threshold",
                    "max_dataset_covered", "lowres_creation_threshold")  # fmt: skip
_OWNER = "Planner"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
_COUNT_FIELDS = ("base_num_features", "max_features_3d", "max_features_2d", "reference_batch_size_3d",
                 "reference_batch_size_2d", "featuremap_min_edge_length", "min_batch_size")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Planner:
    """nnU-Net v2's default experiment planner; every tuning constant is a field.

    ``Planner().plan(fingerprint, spec)`` gives the same plans as nnU-Net v2.8.1's ``ExperimentPlanner`` for
    the same fingerprint. Change a constant with ``dataclasses.replace(planner, gpu_memory_gb=24)``.

    Args:
        gpu_memory_gb: GPU memory target; budgets scale linearly with ``gpu_memory_gb / reference_gb``.
        anisotropy_threshold: Spacing and size ratio above which the coarsest axis counts as anisotropic.
        base_num_features: Features of the first stage (doubled per stage).
        max_features_3d: Feature cap of 3-D networks.
        max_features_2d: Feature cap of 2-D networks.
        reference_value_3d: Feature-map budget of 3-D networks at ``reference_gb``.
        reference_value_2d: Feature-map budget of 2-D networks at ``reference_gb``.
        reference_gb: GPU memory the reference values correspond to.
        reference_batch_size_3d: Batch size the 3-D reference value corresponds to.
        reference_batch_size_2d: Batch size the 2-D reference value corresponds to.
        featuremap_min_edge_length: Smallest edge of the lowest-resolution feature map.
        min_batch_size: Smallest batch size planned.
        max_dataset_covered: Largest fraction of the dataset's voxels one batch may cover.
        lowres_creation_threshold: A 3d_lowres configuration is searched when the full-resolution patch
            covers less than this fraction of the median image.
        network_class: Dotted class name of the network (PlainConvUNet or ResidualEncoderUNet).
        encoder_per_stage: Convs (plain) or residual blocks (residual) per encoder stage; the last value
            repeats for deeper stages.
        decoder_convs_per_stage: Convs per decoder stage, deepest first; the last value repeats.
        shrink_condition: When the patch is small enough, see :data:`ShrinkCondition`.
        plans_name: Name of the plans (and of the plans file).
        preprocessor_name: nnU-Net preprocessor class name written into each configuration.
        overwrite_target_spacing: Full-resolution target spacing (untransposed) instead of the fingerprint's.
        suppress_transpose: Keep the axis order as is.
        data_identifier_base: Prefix of the ``2d`` and ``3d_fullres`` data identifiers (``None``: the plans
            name). ``3d_lowres`` always uses the plans name.
        planner_name: Written as ``experiment_planner_used``.
        standard_gpu_memory_gb: The target a preset was tuned for; :meth:`plan` warns when
            ``gpu_memory_gb`` differs. ``None`` disables the warning.
        image_reader_writer: nnU-Net reader/writer name; ``None`` chooses from ``dataset.json``.

    Raises:
        ConfigError: If a field is out of range.
    """

    gpu_memory_gb: float = 8
    anisotropy_threshold: float = 3
    base_num_features: int = 32
    max_features_3d: int = 320
    max_features_2d: int = 512
    reference_value_3d: float = 560e6
    reference_value_2d: float = 85e6
    reference_gb: float = 8
    reference_batch_size_3d: int = 2
    reference_batch_size_2d: int = 12
    featuremap_min_edge_length: int = 4
    min_batch_size: int = 2
    max_dataset_covered: float = 0.05
    lowres_creation_threshold: float = 0.25
    network_class: str = PLAIN_CONV_UNET
    encoder_per_stage: tuple[int, ...] = (2,)
    decoder_convs_per_stage: tuple[int, ...] = (2,)
    shrink_condition: ShrinkCondition = "two_samples"
    plans_name: str = "nnUNetPlans"
    preprocessor_name: str = "DefaultPreprocessor"
    overwrite_target_spacing: tuple[float, ...] | None = None
    suppress_transpose: bool = False
    data_identifier_base: str | None = None
    planner_name: str = "ExperimentPlanner"
    standard_gpu_memory_gb: float | None = field(default=None)
    image_reader_writer: str | None = None

    def __post_init__(self) -> None:
        _check_fields(self)

    # ------------------------------------------------------------------------------------------ public
    def plan(self, fingerprint: Fingerprint, spec: DatasetSpec, *, dataset_name: str | None = None) -> Plans:
        """Plan every configuration for a dataset.

        Args:
            fingerprint: The dataset fingerprint (:func:`nnseg.extract_fingerprint`).
            spec: The dataset's ``dataset.json`` content; ``numTraining`` and the labels enter planning.
            dataset_name: Written as ``dataset_name`` (nnU-Net uses the dataset folder name, e.g.
                ``"Dataset001_Liver"``); defaults to the ``name`` entry of ``dataset.json``.

        Returns:
            Plans in nnU-Net v2's schema, with a :class:`MemoryReport` per configuration.

        Raises:
            PlanningError: If the fingerprint is empty or does not match the spec, or no patch fits the
                GPU memory target.
        """
        if self.standard_gpu_memory_gb is not None and self.gpu_memory_gb != self.standard_gpu_memory_gb:
            warnings.warn(
                f"{self.planner_name} is tuned for gpu_memory_gb={self.standard_gpu_memory_gb:g}; planning for "
                f"{self.gpu_memory_gb:g} GB scales its budget linearly. Ignore this if you chose it on purpose.",
                stacklevel=2,
            )
        facts = dataset_facts(fingerprint, spec)
        fullres_spacing = self._fullres_spacing(facts)
        forward, backward = spacing_rules.transpose_axes(fullres_spacing, suppress=self.suppress_transpose)
        median = spacing_rules.median_resampled_shape(facts.spacings, facts.shapes, fullres_spacing)
        spacing_t = np.array([fullres_spacing[a] for a in forward])
        median_t = np.array([median[a] for a in forward])
        num_voxels = float(np.prod(median_t, dtype=np.float64) * facts.num_training)
        configurations = self._plan_configurations(spacing_t, median_t, num_voxels, facts)
        median_spacing = spacing_rules.median_spacing(facts.spacings)
        median_shape = spacing_rules.median_shape(facts.shapes)
        plans = {
            "dataset_name": dataset_name if dataset_name is not None else default_dataset_name(spec),
            "plans_name": self.plans_name,
            "original_median_spacing_after_transp": [median_spacing[a] for a in forward],
            "original_median_shape_after_transp": [int(np.round(median_shape[a])) for a in forward],
            "image_reader_writer": self.image_reader_writer or reader_writer(spec),
            "transpose_forward": list(forward),
            "transpose_backward": list(backward),
            "configurations": configurations,
            "experiment_planner_used": self.planner_name,
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": fingerprint.to_json()[
                "foreground_intensity_properties_per_channel"
            ],
        }
        return Plans.from_json(plans)

    # ------------------------------------------------------------------------------------------ steps
    def _fullres_spacing(self, facts: DatasetFacts) -> tuple[float, ...]:
        if self.overwrite_target_spacing is not None:
            return self.overwrite_target_spacing
        return spacing_rules.target_spacing(facts.spacings, facts.shapes, self.anisotropy_threshold)

    def _plan_configurations(
        self, spacing: np.ndarray, median: np.ndarray, num_voxels: float, facts: DatasetFacts
    ) -> dict[str, dict[str, Any]]:
        configurations: dict[str, dict[str, Any]] = {}
        plane = self._fit(spacing[1:], median[1:], num_voxels, facts)
        configurations["2d"] = self._configuration("2d", spacing[1:], median[1:], plane, facts, batch_dice=True)
        if median[0] == 1:
            return configurations
        full = self._fit(spacing, median, num_voxels, facts)
        lowres = self._lowres(spacing, median, full, facts)
        if lowres is not None:
            low_spacing, low_median, low_fit = lowres
            low = self._configuration("3d_lowres", low_spacing, low_median, low_fit, facts, batch_dice=False)
            configurations["3d_lowres"] = {**low, "next_stage": "3d_cascade_fullres"}
        configurations["3d_fullres"] = self._configuration(
            "3d_fullres", spacing, median, full, facts, batch_dice=lowres is not None
        )
        if lowres is not None:
            configurations["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
        return configurations

    def _lowres(
        self, spacing: np.ndarray, median: np.ndarray, full: Fit, facts: DatasetFacts
    ) -> tuple[np.ndarray, tuple[int, ...], Fit] | None:
        """Search a coarser spacing whose patch covers enough of the image (nnU-Net's 3d_lowres rule)."""
        threshold = self.lowres_creation_threshold
        fit, low_spacing, low_median = full, spacing, median
        steps = 0
        while _coverage(fit.topology.patch_size, low_median) < threshold:
            low_spacing = spacing_rules.lowres_spacing_step(low_spacing, _LOWRES_SPACING_FACTOR)
            low_median = spacing / low_spacing * median
            rounded = tuple(round(float(v)) for v in low_median)
            num_voxels = float(np.prod(low_median, dtype=np.float64) * facts.num_training)
            fit = self._fit(low_spacing, np.array(rounded, dtype=np.float64), num_voxels, facts)
            steps += 1
        if steps == 0:
            return None
        if np.prod(median, dtype=np.float64) / np.prod(low_median, dtype=np.float64) < _LOWRES_MIN_SHRINK:
            logger.info(
                "no 3d_lowres: its median image is less than %g times smaller than 3d_fullres", _LOWRES_MIN_SHRINK
            )
            return None
        return low_spacing, tuple(round(float(v)) for v in low_median), fit

    def _fit(self, spacing: np.ndarray, median: np.ndarray, num_voxels: float, facts: DatasetFacts) -> Fit:
        """Choose the largest patch (and then the batch size) whose estimate fits the budget."""
        is_3d = len(spacing) == 3
        ref_value = self.reference_value_3d if is_3d else self.reference_value_2d
        ref_batch = self.reference_batch_size_3d if is_3d else self.reference_batch_size_2d
        budget = ref_value * (self.gpu_memory_gb / self.reference_gb)
        min_edge = self.featuremap_min_edge_length
        topology = pooling_topology(spacing, initial_patch_size(spacing, median), min_edge)
        estimate = self._estimate(topology, facts.num_classes)
        while self._too_large(estimate, ref_batch, budget):
            axis, patch, smaller = shrink_patch(spacing, topology, median, min_edge)
            if patch[axis] < min_edge:
                raise PlanningError(_too_small_message(self, estimate, ref_batch, budget, topology))
            topology, estimate = smaller, self._estimate(smaller, facts.num_classes)
        batch_size = round(budget / estimate * ref_batch)
        covered = round(num_voxels * self.max_dataset_covered / np.prod(topology.patch_size, dtype=np.float64))
        return Fit(topology, max(min(batch_size, covered), self.min_batch_size), estimate, budget)

    def _too_large(self, estimate: float, ref_batch: int, budget: float) -> bool:
        if self.shrink_condition == "two_samples":
            return estimate / ref_batch * 2 > budget
        return estimate > budget

    def _estimate(self, topology: Topology, num_classes: int) -> int:
        ndim = len(topology.patch_size)
        features = self._features(topology.num_stages, ndim)
        _, residual = NETWORKS[self.network_class]
        return feature_map_size(
            topology.patch_size,
            topology.strides,
            features,
            repeat_last(self.encoder_per_stage, topology.num_stages),
            repeat_last(self.decoder_convs_per_stage, topology.num_stages - 1),
            num_classes,
            residual=residual,
        )

    def _features(self, num_stages: int, ndim: int) -> tuple[int, ...]:
        cap = self.max_features_3d if ndim == 3 else self.max_features_2d
        return features_per_stage(num_stages, self.base_num_features, cap)

    def _configuration(
        self, name: str, spacing: Floats, median: Floats, fit: Fit, facts: DatasetFacts, *, batch_dice: bool
    ) -> dict[str, Any]:
        base = self.plans_name if name == "3d_lowres" else (self.data_identifier_base or self.plans_name)
        stages = fit.topology.num_stages
        architecture = architecture_json(
            self.network_class,
            fit.topology,
            self._features(stages, len(spacing)),
            repeat_last(self.encoder_per_stage, stages),
            repeat_last(self.decoder_convs_per_stage, stages - 1),
        )
        report = MemoryReport(
            estimate=fit.estimate,
            budget=fit.budget,
            gpu_memory_gb=self.gpu_memory_gb,
            note="estimate: conv feature-map elements per sample (nnU-Net's proxy); shrink rule "
            f"{self.shrink_condition!r}; not measured yet: nnseg.planning.attach_memory_reports(plans, spec) "
            "(what `nnseg plan` runs) measures one training step",
        )
        configuration = configuration_json(
            data_identifier=f"{base}_{name}",
            preprocessor_name=self.preprocessor_name,
            spacing=spacing,
            median=median,
            fit=fit,
            facts=facts,
            architecture=architecture,
            batch_dice=batch_dice,
            integer_median=name == "3d_lowres",
        )
        return {**configuration, "nnseg_memory_report": report.to_json()}


def _check_fields(planner: Planner) -> None:
    """Check every field (``ConfigError`` naming it) and store the sequences as tuples of numbers."""
    for name in ("gpu_memory_gb", *_POSITIVE_FIELDS):
        parse_number(_OWNER, name, getattr(planner, name), low=0.0, low_open=True, default=_default(name))
    for name in _COUNT_FIELDS:
        parse_int(_OWNER, name, getattr(planner, name), minimum=1)
    for name in ("plans_name", "data_identifier_base"):
        value = getattr(planner, name)
        if (value is not None or name == "plans_name") and not (isinstance(value, str) and _SAFE_NAME.fullmatch(value)):
            raise ConfigError(
                f"Planner: {name} must be a file-name-safe name (letters, digits, '.', '_', '-'; starting "
                f"with a letter or digit), because it names the plans file and the preprocessed data; got "
                f"{value!r}. Example: 'nnUNetResEncUNetLPlans_40G'."
            )
    parse_choice(_OWNER, "network_class", planner.network_class, NETWORKS)
    parse_choice(_OWNER, "shrink_condition", planner.shrink_condition, ("two_samples", "reference_batch"))
    _normalise_sequences(planner)


def _normalise_sequences(planner: Planner) -> None:
    """Store the sequence fields as tuples of int/float (so planners compare and hash by value)."""
    for name in ("encoder_per_stage", "decoder_convs_per_stage"):
        values = getattr(planner, name)
        if (
            isinstance(values, str | bytes)
            or not isinstance(values, Sequence | np.ndarray)
            or not values
            or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values)
        ):
            raise ConfigError(f"Planner: {name} must be a non-empty sequence of integers >= 1; got {values!r}.")
        object.__setattr__(planner, name, tuple(int(v) for v in values))
    if planner.overwrite_target_spacing is not None:
        try:
            spacing = tuple(float(v) for v in planner.overwrite_target_spacing)
        except (TypeError, ValueError):
            spacing = ()
        if len(spacing) != 3 or not all(0 < v < math.inf for v in spacing):
            raise ConfigError(
                f"Planner: overwrite_target_spacing must be three positive, finite numbers (array axis order); "
                f"got {planner.overwrite_target_spacing!r}."
            )
        object.__setattr__(planner, "overwrite_target_spacing", spacing)


def _too_small_message(planner: Planner, estimate: int, ref_batch: int, budget: float, topology: Topology) -> str:
    ndim = len(topology.patch_size)
    factor = (estimate / ref_batch * 2 if planner.shrink_condition == "two_samples" else estimate) / budget
    needed = math.ceil(planner.gpu_memory_gb * factor * 100) / 100
    return (
        f"no {ndim}-D patch fits gpu_memory_gb={planner.gpu_memory_gb:g}: shrinking the patch to fit the budget "
        f"of {budget:.4g} feature-map elements would make an edge shorter than featuremap_min_edge_length="
        f"{planner.featuremap_min_edge_length} (the smallest patch, {list(topology.patch_size)}, needs {estimate}). "
        f"Use gpu_memory_gb >= {needed:g}."
    )


def _default(name: str) -> Any:
    return next(f.default for f in fields(Planner) if f.name == name)


def _coverage(patch: Floats, median: Floats) -> float:
    """Fraction of the median image a patch covers."""
    return float(np.prod(patch, dtype=np.float64) / np.prod(median, dtype=np.float64))
