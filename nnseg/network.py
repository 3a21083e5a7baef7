"""Build the planned U-Net from an :class:`~nnseg.planning.ArchitecturePlan`.

A plan names its network by a dotted class path (``network_class_name``) and stores the building blocks
(``conv_op``, ``norm_op``, ``dropout_op``, ``nonlin``) as dotted names too. nnU-Net imports whatever such
a string points to; here every name is looked up in an explicit table of known classes instead, so a plan
file can never make nnseg import arbitrary code. Unknown names raise :class:`~nnseg.errors.PlansError`
with the closest known names.

Weights are initialised as nnU-Net does: Kaiming-normal (negative slope 1e-2) on every convolution and
transposed convolution, biases 0, and for residual networks the last norm of each residual block set to 0,
so every block starts as the identity.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from nnseg._checks import parse_int
from nnseg.errors import PlansError

if TYPE_CHECKING:
    import torch

__all__ = ["ArchitectureLike", "build_network", "known_building_blocks", "known_network_classes"]


class ArchitectureLike(Protocol):
    """What :func:`build_network` reads from a plan's architecture (:class:`nnseg.planning.ArchitecturePlan`).

    A protocol, so the network builder (base layer) does not depend on the planning package above it.
    """

    @property
    def network_class_name(self) -> str:
        """Dotted name of the network class."""

    @property
    def arch_kwargs(self) -> Mapping[str, Any]:
        """Keyword arguments of the network class."""

    @property
    def kw_requires_import(self) -> tuple[str, ...]:
        """Keys of ``arch_kwargs`` whose values name classes."""


# torch.nn classes a plan may name as a building block, grouped only for readability.
_TORCH_BLOCKS = (
    # convolutions
    "Conv1d",
    "Conv2d",
    "Conv3d",
    # norms
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "GroupNorm",
    "LayerNorm",
    "SyncBatchNorm",
    # dropout
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    # nonlinearities
    "LeakyReLU",
    "ReLU",
    "ReLU6",
    "PReLU",
    "ELU",
    "SELU",
    "CELU",
    "GELU",
    "SiLU",
    "Mish",
    "Hardswish",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Identity",
)

# dynamic_network_architectures classes that take nnU-Net's plain U-Net keyword set.
_NETWORK_CLASSES = ("PlainConvUNet", "ResidualEncoderUNet", "ResidualUNet")
_DNA_UNET_MODULE = "dynamic_network_architectures.architectures.unet"
_DNA_BLOCK_MODULE = "dynamic_network_architectures.building_blocks.residual"
_DNA_BLOCKS = ("BasicBlockD", "BottleneckD")


def _torch_block_table() -> dict[str, type]:
    from torch import nn

    table: dict[str, type] = {}
    for name in _TORCH_BLOCKS:
        cls = getattr(nn, name)
        # accept both the public path (torch.nn.Conv3d) and the defining module (torch.nn.modules.conv.Conv3d)
        table[f"torch.nn.{name}"] = cls
        table[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return table


def _dna_table(module_name: str, class_names: tuple[str, ...]) -> dict[str, type]:
    import importlib

    module = importlib.import_module(module_name)
    return {f"{module_name}.{name}": getattr(module, name) for name in class_names}


def known_building_blocks() -> dict[str, type]:
    """Return the dotted names a plan may use for ``conv_op``, ``norm_op``, ``dropout_op``, ``nonlin``, ``block``.

    Returns:
        A mapping from dotted name to class. Both ``torch.nn.X`` and ``torch.nn.modules.<file>.X`` spellings
        are present.
    """
    return {**_torch_block_table(), **_dna_table(_DNA_BLOCK_MODULE, _DNA_BLOCKS)}


def known_network_classes() -> dict[str, type]:
    """Return the network classes a plan may name in ``network_class_name``, by dotted name."""
    return _dna_table(_DNA_UNET_MODULE, _NETWORK_CLASSES)


def _lookup(name: str, table: Mapping[str, type], what: str) -> type:
    """Find ``name`` (dotted, or a bare class name if that is unambiguous) in ``table``."""
    if name in table:
        return table[name]
    by_bare_name: dict[str, set[type]] = {}
    for dotted, cls in table.items():
        by_bare_name.setdefault(dotted.rsplit(".", 1)[-1], set()).add(cls)
    matches = by_bare_name.get(name, set())
    if len(matches) == 1:
        return next(iter(matches))
    close = difflib.get_close_matches(name, list(table) + list(by_bare_name), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise PlansError(
        f"{what}: unknown class {name!r}; nnseg only builds known classes (see "
        f"nnseg.network.known_network_classes() / known_building_blocks()).{hint}"
    )


def _resolve_kwargs(architecture: ArchitectureLike) -> dict[str, Any]:
    """Return ``arch_kwargs`` with every ``_kw_requires_import`` entry turned into a class."""
    blocks = known_building_blocks()
    kwargs = dict(architecture.arch_kwargs)
    for key in architecture.kw_requires_import:
        if key not in kwargs:
            raise PlansError(
                f"architecture: '_kw_requires_import' lists {key!r} but arch_kwargs has no such key; "
                f"expected one of {sorted(kwargs)}. Remove it from '_kw_requires_import' or add the key."
            )
        value = kwargs[key]
        if value is None or isinstance(value, type):
            continue
        if not isinstance(value, str):
            raise PlansError(f"architecture: arch_kwargs[{key!r}] must be a dotted class name or null; got {value!r}.")
        kwargs[key] = _lookup(value, blocks, f"architecture: arch_kwargs[{key!r}]")
    return kwargs


def build_network(
    architecture: ArchitectureLike,
    *,
    num_input_channels: int,
    num_outputs: int,
    deep_supervision: bool = True,
    initialize: bool = True,
) -> torch.nn.Module:
    """Build and initialise the network a plan describes.

    Args:
        architecture: The plan's architecture (``plans["3d_fullres"].architecture``).
        num_input_channels: Image channels (``spec.num_channels``).
        num_outputs: Segmentation heads (``spec.num_segmentation_heads``): labels including background, or
            the number of regions.
        deep_supervision: Return one output per decoder stage, highest resolution first, instead of a single
            tensor. Training uses it; inference does not.
        initialize: Apply nnU-Net's weight initialisation. Turn off when weights are loaded right after.

    Returns:
        The network, on the default device (wrap the call in ``with torch.device(...)`` to build elsewhere).

    Raises:
        PlansError: If the class or a building block is unknown, or the keyword arguments do not fit the class.
        ConfigError: If a channel or output count is not an integer >= 1.

    Example:
        >>> net = build_network(plans["3d_fullres"].architecture, num_input_channels=1, num_outputs=3)
    """
    parse_int("build_network", "num_input_channels", num_input_channels, minimum=1)
    parse_int("build_network", "num_outputs", num_outputs, minimum=1)
    network_class = _lookup(architecture.network_class_name, known_network_classes(), "architecture.network_class_name")
    kwargs = _resolve_kwargs(architecture)
    kwargs.pop("deep_supervision", None)
    try:
        network = network_class(
            input_channels=num_input_channels, num_classes=num_outputs, deep_supervision=deep_supervision, **kwargs
        )
    except (TypeError, AssertionError, ValueError) as err:
        raise PlansError(
            f"architecture: cannot build {architecture.network_class_name} from arch_kwargs {sorted(kwargs)}: {err}. "
            "Check the per-stage lists (kernel_sizes, strides, n_conv_per_stage...) have n_stages entries."
        ) from err
    if initialize:
        network.apply(_he_init())
        network.apply(_zero_last_norm_of_residual_blocks())
    return network


def _he_init() -> Callable[[Any], None]:
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    init: Callable[[Any], None] = InitWeights_He(1e-2)
    return init


def _zero_last_norm_of_residual_blocks() -> Callable[[Any], None]:
    from dynamic_network_architectures.initialization.weight_init import init_last_bn_before_add_to_0

    init: Callable[[Any], None] = init_last_bn_before_add_to_0
    return init
