"""Resolving ``inherits_from`` between configurations, and converting nnU-Net's old architecture keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nnseg._suggest import unknown_name_hint
from nnseg.errors import PlansError
from nnseg.planning._fields import building_blocks
from nnseg.planning._frozen import to_jsonable

__all__ = ["LEGACY_KEYS", "convert_legacy_architecture", "is_legacy", "resolve_inheritance"]

LEGACY_KEYS = (
    "UNet_class_name",
    "UNet_base_num_features",
    "n_conv_per_stage_encoder",
    "n_conv_per_stage_decoder",
    "num_pool_per_axis",
    "pool_op_kernel_sizes",
    "conv_kernel_sizes",
    "unet_max_num_features",
)
LEGACY_CLASSES = {
    "PlainConvUNet": ("dynamic_network_architectures.architectures.unet.PlainConvUNet", "n_conv_per_stage"),
    "ResidualEncoderUNet": (
        "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
        "n_blocks_per_stage",
    ),
}


def resolve_inheritance(configurations: Mapping[str, Mapping[str, Any]], name: str, *, where: str) -> dict[str, Any]:
    """Return configuration ``name`` with its ``inherits_from`` chain merged (child keys win).

    The returned dict no longer contains ``inherits_from``; it is a fresh plain copy.

    Raises:
        PlansError: If ``name`` or a parent does not exist, or the chain has a cycle.
    """
    if name not in configurations:
        raise PlansError(f"no configuration {name!r} in {where}. {unknown_name_hint(name, configurations)}")
    chain = [name]
    while "inherits_from" in configurations[chain[-1]]:
        child = chain[-1]
        parent = configurations[child]["inherits_from"]
        if not isinstance(parent, str):
            raise PlansError(
                f"configuration {child!r} in {where}: 'inherits_from' must be a configuration name, got {to_jsonable(parent)!r}."
            )
        if parent in chain:
            path = " -> ".join(repr(n) for n in [*chain, parent])
            raise PlansError(
                f"configuration {name!r} in {where}: 'inherits_from' forms a cycle ({path}). "
                "Remove 'inherits_from' from one of these configurations."
            )
        if parent not in configurations:
            raise PlansError(
                f"configuration {child!r} in {where} inherits_from {parent!r}, which does not exist. "
                f"{unknown_name_hint(parent, configurations)}"
            )
        chain.append(parent)
    merged: dict[str, Any] = {}
    for link in reversed(chain):
        merged.update(to_jsonable(configurations[link]))
    merged.pop("inherits_from", None)
    return merged


def is_legacy(configuration: Mapping[str, Any]) -> bool:
    """Whether a resolved configuration uses nnU-Net's old architecture keys instead of ``architecture``."""
    return "architecture" not in configuration and "UNet_class_name" in configuration


def convert_legacy_architecture(configuration: Mapping[str, Any], *, name: str, where: str) -> dict[str, Any]:
    """Return a copy of an old-format configuration with an ``architecture`` entry built from its old keys.

    The conversion follows what nnU-Net v2 does for such plans: the class name maps to the
    ``dynamic_network_architectures`` class, features double per stage from ``UNet_base_num_features`` up to
    ``unet_max_num_features``, conv and instance norm match the patch dimension, and the old keys are dropped.

    Raises:
        PlansError: If a needed key is missing or the class is neither PlainConvUNet nor ResidualEncoderUNet.
    """
    where = f"{where}: configuration {name!r} (old nnU-Net plans format)"
    missing = [key for key in (*LEGACY_KEYS, "patch_size") if key not in configuration]
    if missing:
        raise PlansError(
            f"{where} lacks key(s) {missing} needed to rebuild its 'architecture'. "
            "Re-plan the dataset (nnseg or nnUNetv2_plan_experiment) to get a current plans file."
        )
    class_name = configuration["UNet_class_name"]
    if class_name not in LEGACY_CLASSES:
        raise PlansError(
            f"{where}: cannot convert UNet_class_name {class_name!r}; only 'PlainConvUNet' and "
            "'ResidualEncoderUNet' can be converted. Re-plan the dataset to get a current plans file."
        )
    network_class_name, blocks_key = LEGACY_CLASSES[class_name]
    arch_kwargs = _legacy_arch_kwargs(configuration, blocks_key)
    converted = {key: value for key, value in configuration.items() if key not in LEGACY_KEYS}
    converted["architecture"] = {
        "network_class_name": network_class_name,
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    return converted


def _legacy_arch_kwargs(configuration: Mapping[str, Any], blocks_key: str) -> dict[str, Any]:
    """Build nnU-Net's ``arch_kwargs`` from the old per-configuration architecture keys."""
    dim = len(configuration["patch_size"])
    n_stages = len(configuration["n_conv_per_stage_encoder"])
    base, cap = configuration["UNet_base_num_features"], configuration["unet_max_num_features"]
    return {
        "n_stages": n_stages,
        "features_per_stage": [min(base * 2**i, cap) for i in range(n_stages)],
        "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
        "kernel_sizes": to_jsonable(configuration["conv_kernel_sizes"]),
        "strides": to_jsonable(configuration["pool_op_kernel_sizes"]),
        blocks_key: to_jsonable(configuration["n_conv_per_stage_encoder"]),
        "n_conv_per_stage_decoder": to_jsonable(configuration["n_conv_per_stage_decoder"]),
        **building_blocks(dim),
    }
