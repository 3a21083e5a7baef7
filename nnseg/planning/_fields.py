"""Key names of nnU-Net's plans and configuration dicts, and parsing of their plain values."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nnseg.errors import PlansError

__all__ = [
    "CONFIGURATION_KEYS",
    "CONTEXT_KEY",
    "MEMORY_REPORT_KEY",
    "NAME_KEY",
    "PLANS_CONTEXT_KEYS",
    "building_blocks",
    "check_consistency",
    "parse_configuration",
    "parse_context",
]

MEMORY_REPORT_KEY = "nnseg_memory_report"
NAME_KEY = "nnseg_configuration_name"
CONTEXT_KEY = "nnseg_plans_context"

# configuration keys copied one to one (architecture and batch_dice are handled apart)
CONFIGURATION_KEYS = (
    "data_identifier",
    "preprocessor_name",
    "batch_size",
    "patch_size",
    "median_image_size_in_voxels",
    "spacing",
    "normalization_schemes",
    "use_mask_for_norm",
    "resampling_fn_data",
    "resampling_fn_seg",
    "resampling_fn_data_kwargs",
    "resampling_fn_seg_kwargs",
    "resampling_fn_probabilities",
    "resampling_fn_probabilities_kwargs",
)
REQUIRED_CONFIGURATION_KEYS = (*CONFIGURATION_KEYS, "architecture", "batch_dice")
OPTIONAL_CONFIGURATION_KEYS = (
    "next_stage",
    "previous_stage",
    "inherits_from",
    MEMORY_REPORT_KEY,
    NAME_KEY,
    CONTEXT_KEY,
)

# plans-level keys a configuration carries with it
PLANS_CONTEXT_KEYS = (
    "transpose_forward",
    "transpose_backward",
    "foreground_intensity_properties_per_channel",
    "image_reader_writer",
    "plans_name",
    "dataset_name",
)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool | int) or value not in (0, 1):
        raise ValueError(f"{value!r} is not a boolean")
    return bool(value)


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _to_mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{value!r} is not a dict")
    return value


def _sequence_of(kind: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def parse(value: Any) -> tuple[Any, ...]:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            raise ValueError(f"{value!r} is not a list")
        return tuple(kind(v) for v in value)

    return parse


def _to_stage(value: Any) -> str | tuple[str, ...] | None:
    if value is None or isinstance(value, str):
        return value
    return _sequence_of(_to_str)(value)


PARSERS: dict[str, Callable[[Any], Any]] = {
    "data_identifier": _to_str,
    "preprocessor_name": _to_str,
    "batch_size": _to_int,
    "patch_size": _sequence_of(_to_int),
    "median_image_size_in_voxels": _sequence_of(float),
    "spacing": _sequence_of(float),
    "normalization_schemes": _sequence_of(_to_str),
    "use_mask_for_norm": _sequence_of(_to_bool),
    "resampling_fn_data": _to_str,
    "resampling_fn_seg": _to_str,
    "resampling_fn_probabilities": _to_str,
    "resampling_fn_data_kwargs": _to_mapping,
    "resampling_fn_seg_kwargs": _to_mapping,
    "resampling_fn_probabilities_kwargs": _to_mapping,
    "batch_dice": _to_bool,
    "next_stage": _to_stage,
    "previous_stage": lambda v: None if v is None else _to_str(v),
    "transpose_forward": _sequence_of(_to_int),
    "transpose_backward": _sequence_of(_to_int),
    "foreground_intensity_properties_per_channel": _to_mapping,
    "image_reader_writer": _to_str,
    "plans_name": _to_str,
    "dataset_name": _to_str,
}


def _parse(data: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return PARSERS[key](data[key])
    except (TypeError, ValueError) as err:
        raise PlansError(f"{where}: key {key!r} is malformed ({err}); got {data[key]!r}.") from err


def parse_configuration(data: Mapping[str, Any], *, name: str, where: str) -> dict[str, Any]:
    """Return the ``ConfigurationPlan`` keyword values found in a resolved configuration dict.

    ``architecture`` and the memory report are left to the caller; unknown keys go to ``extra``.

    Raises:
        PlansError: If a required key is missing or a value has the wrong type.
    """
    where = f"{where}: configuration {name!r}"
    if not isinstance(data, Mapping):
        raise PlansError(f"{where} must be a dict, got {type(data).__name__}.")
    missing = [key for key in REQUIRED_CONFIGURATION_KEYS if key not in data]
    if missing:
        raise PlansError(
            f"{where} lacks key(s) {missing}; an nnU-Net v2 configuration needs {list(REQUIRED_CONFIGURATION_KEYS)}. "
            "Add them, or let the configuration inherit them with 'inherits_from'."
        )
    values: dict[str, Any] = {"name": name}
    for key in (*CONFIGURATION_KEYS, "batch_dice", "next_stage", "previous_stage"):
        if key in data:
            values[key] = _parse(data, key, where)
    known = set(REQUIRED_CONFIGURATION_KEYS) | set(OPTIONAL_CONFIGURATION_KEYS)
    values["extra"] = {key: value for key, value in data.items() if key not in known}
    return values


def parse_context(context: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Return the plans-level values a configuration carries, read from a plans dict or a stored context.

    Raises:
        PlansError: If a key is missing or malformed.
    """
    if not isinstance(context, Mapping):
        raise PlansError(f"{where}: plans-level facts must be a dict, got {type(context).__name__}.")
    missing = [key for key in PLANS_CONTEXT_KEYS if key not in context]
    if missing:
        raise PlansError(f"{where}: plans-level key(s) {missing} are missing; expected {list(PLANS_CONTEXT_KEYS)}.")
    return {key: _parse(context, key, where) for key in PLANS_CONTEXT_KEYS}


def check_consistency(plan: Any) -> None:
    """Raise PlansError if the lengths and permutations of a ``ConfigurationPlan`` disagree."""
    where = f"configuration {plan.name!r} of plans {plan.plans_name!r}"
    if plan.ndim not in (2, 3):
        raise PlansError(f"{where}: patch_size must have 2 or 3 axes, got {list(plan.patch_size)}.")
    if len(plan.spacing) != plan.ndim:
        raise PlansError(
            f"{where}: spacing {list(plan.spacing)} has {len(plan.spacing)} axes but patch_size "
            f"{list(plan.patch_size)} has {plan.ndim}; they must match."
        )
    if len(plan.use_mask_for_norm) != len(plan.normalization_schemes):
        raise PlansError(
            f"{where}: {len(plan.normalization_schemes)} normalization_schemes but "
            f"{len(plan.use_mask_for_norm)} use_mask_for_norm flags; expected one of each per input channel."
        )
    if plan.batch_size < 1:
        raise PlansError(f"{where}: batch_size must be >= 1, got {plan.batch_size}.")
    forward, backward = plan.transpose_forward, plan.transpose_backward
    axes = list(range(len(forward)))
    if sorted(forward) != axes or sorted(backward) != axes or [forward[i] for i in backward] != axes:
        raise PlansError(
            f"{where}: transpose_forward {list(forward)} and transpose_backward {list(backward)} must be "
            "inverse permutations of the axes."
        )


def building_blocks(ndim: int) -> dict[str, Any]:
    """nnU-Net's building blocks of ``arch_kwargs``, the keys after the topology ones, for ``ndim`` dimensions.

    Conv bias, instance norm, no dropout and leaky ReLU, as the dotted names plans files hold.
    """
    return {
        "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
