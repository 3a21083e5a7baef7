"""Fine-tuning: start a network from the weights of another training (nnseg's or nnU-Net's checkpoint).

Every weight of the new network is copied from the checkpoint except the segmentation heads (the ``seg_layers``
of the decoder, which depend on the number of labels): those keep their fresh initialisation, as nnU-Net's
``-pretrained_weights`` does. Only the network is transferred; optimiser, schedule and step start fresh. The
checkpoint is loaded with ``weights_only=True``, so no pickled code is ever executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nnseg.checkpoint import load_weights_only, strip_wrapper_prefixes
from nnseg.errors import CheckpointError

__all__ = ["PretrainedTransfer", "is_segmentation_head", "load_pretrained_weights", "read_network_weights"]

_HEAD_MARKER = ".seg_layers."


def is_segmentation_head(name: str) -> bool:
    """Whether the parameter ``name`` belongs to a segmentation head (kept fresh when fine-tuning)."""
    return _HEAD_MARKER in f".{name}"


@dataclass(frozen=True)
class PretrainedTransfer:
    """What :func:`load_pretrained_weights` did.

    Args:
        source: The checkpoint file.
        copied: Names of the weights copied from it.
        kept_fresh: Names of the segmentation-head weights left at their initialisation.
    """

    source: Path
    copied: tuple[str, ...]
    kept_fresh: tuple[str, ...]


def read_network_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The ``network_weights`` of an nnseg (``.pt``) or nnU-Net v2 (``.pth``) checkpoint, loaded safely.

    Raises:
        CheckpointError: If the file is missing, truncated, not loadable without executing pickled code, or
            holds no network weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {path} do not exist; expected an nnseg or nnU-Net checkpoint.")
    content = load_weights_only(path, describe="pretrained weights", fix=(
        "the file is truncated, damaged or holds objects other than tensors and plain values. Point "
        "--pretrained-weights at a complete checkpoint_final.pt(h)."))  # fmt: skip
    weights = content.get("network_weights") if isinstance(content, Mapping) else None
    if not isinstance(weights, Mapping) or not weights:
        raise CheckpointError(f"pretrained weights {path} hold no 'network_weights'; it is not a training checkpoint.")
    return strip_wrapper_prefixes(weights)


def load_pretrained_weights(network: nn.Module, path: str | os.PathLike[str]) -> PretrainedTransfer:
    """Copy every weight of ``path`` into ``network`` except the segmentation heads.

    Args:
        network: The freshly built network (a DDP or ``torch.compile`` wrapper is looked through).
        path: An nnseg ``checkpoint_*.pt`` or nnU-Net ``checkpoint_*.pth``.

    Returns:
        Which weights were copied and which kept fresh.

    Raises:
        CheckpointError: If the checkpoint cannot be read, or any non-head weight of ``network`` is missing from
            it or has another shape (every differing parameter is listed); ``network`` is unchanged then.
    """
    source = read_network_weights(path)
    module = _unwrap(network)
    target = module.state_dict()
    problems: list[str] = []
    for name, tensor in target.items():
        if is_segmentation_head(name):
            continue
        if name not in source:
            problems.append(f"{name}: missing in the checkpoint")
        elif tuple(source[name].shape) != tuple(tensor.shape):
            problems.append(f"{name}: {tuple(source[name].shape)} in the checkpoint, {tuple(tensor.shape)} here")
    if problems:
        raise CheckpointError(
            f"pretrained weights {path} do not fit this network ({len(problems)} differing parameter(s)): "
            + "; ".join(problems)
            + ". Fine-tune with the same architecture and patch dimensionality as the pretraining (same plans "
            "topology, 2d vs 3d); only the segmentation heads may differ."
        )
    copied = tuple(name for name in target if not is_segmentation_head(name))
    update = {name: source[name].to(dtype=target[name].dtype) for name in copied}
    module.load_state_dict({**target, **update})
    return PretrainedTransfer(Path(path), copied, tuple(name for name in target if is_segmentation_head(name)))


def _unwrap(network: nn.Module) -> nn.Module:
    while True:
        inner = getattr(network, "_orig_mod", None) or getattr(network, "module", None)
        if not isinstance(inner, nn.Module):
            return network
        network = inner
