"""Sliding-window prediction of one preprocessed array: tiles, mirror test-time augmentation, Gaussian blending.

:func:`predict_logits` is the pure per-case core of inference: a network and a ``(c, z, y, x)`` array in,
logits of the same spatial shape out. It follows nnU-Net v2 step by step (centred zero padding, tile grid,
mirroring over every non-empty combination of the allowed axes, Gaussian weights, accumulation in float16 by
default), so the same weights give the same logits.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nnseg.errors import ConfigError, NnsegError
from nnseg.inference._tiling import gaussian_importance_map, padding_for_patch, tile_slices

__all__ = ["mirror_axis_combinations", "predict_logits", "predict_tile"]


def mirror_axis_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial ``mirror_axes``, as tensor dims of a batched input."""
    dims = [a + 2 for a in mirror_axes]
    return [combo for size in range(1, len(dims) + 1) for combo in itertools.combinations(dims, size)]


def predict_tile(network: nn.Module, tile: torch.Tensor, mirror_axes: Sequence[int] | None) -> torch.Tensor:
    """Network output for a batched tile, averaged over the mirrored copies (logit space)."""
    prediction = network(tile)
    if not mirror_axes:
        return prediction
    combos = mirror_axis_combinations(mirror_axes)
    for dims in combos:
        prediction = prediction + torch.flip(network(torch.flip(tile, dims)), dims)
    return prediction / (len(combos) + 1)


def predict_logits(
    network: nn.Module,
    data: torch.Tensor | np.ndarray,
    patch_size: Sequence[int],
    num_outputs: int,
    *,
    step_size: float = 0.5,
    mirror_axes: Sequence[int] | None = None,
    use_gaussian: bool = True,
    device: torch.device | str = "cpu",
    accumulation_dtype: torch.dtype = torch.float16,
    amp: bool | None = None,
) -> torch.Tensor:
    """Sliding-window logits of one case.

    Args:
        network: The network in eval mode, without deep supervision, already on ``device``.
        data: Preprocessed ``(c, z, y, x)`` array (``(c, 1, y, x)`` for 2-D data).
        patch_size: The configuration's patch (2 entries for 2-D configurations: each slice along axis 0
            is predicted on its own).
        num_outputs: Output channels of the network (classes or regions).
        step_size: Tile step as a fraction of the patch (nnU-Net: 0.5).
        mirror_axes: Spatial axes (0-based, of the patch) to mirror for test-time augmentation; None or empty
            disables it.
        use_gaussian: Weight each tile with the Gaussian importance map (else uniformly).
        device: Where the network runs. Accumulators live on the CPU.
        accumulation_dtype: dtype of the accumulators; float16 as nnU-Net (use float32 for more precision).
        amp: Run the network under autocast; None means on CUDA only.

    Returns:
        ``(num_outputs, z, y, x)`` float32 logits on the CPU.

    Raises:
        ConfigError: If the array and patch disagree in dimensions.
        NnsegError: If the blended result is not finite (an fp16 overflow).
    """
    array = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data)
    spatial = tuple(array.shape[1:])
    if array.ndim != 4 or len(patch_size) not in (2, 3) or (len(patch_size) == 2 and spatial[0] < 1):
        raise ConfigError(
            f"sliding window: expected data (c, z, y, x) and a 2- or 3-D patch; got data {tuple(array.shape)} and "
            f"patch {tuple(patch_size)}."
        )
    pads = padding_for_patch(spatial, patch_size)
    padded = torch.nn.functional.pad(array, [p for pair in reversed(pads) for p in pair], value=0.0)
    shape = tuple(padded.shape[1:])
    device = torch.device(device)
    autocast = torch.autocast(device.type) if (amp if amp is not None else device.type == "cuda") else None
    logits = torch.zeros((num_outputs, *shape), dtype=accumulation_dtype)
    weights = torch.zeros(shape, dtype=accumulation_dtype)
    numpy_dtype = torch.empty((), dtype=accumulation_dtype).numpy().dtype
    gaussian = torch.from_numpy(gaussian_importance_map(patch_size, numpy_dtype))  # zeros fixed in this dtype
    tile_weight = gaussian if use_gaussian else torch.ones_like(gaussian)
    two_d = len(patch_size) == 2
    with torch.no_grad(), autocast or contextlib.nullcontext():
        for slices in tile_slices(shape, patch_size, step_size):
            tile = padded[(slice(None),) + tuple(slices)]
            if two_d:
                tile = tile[:, 0]
            output = predict_tile(network, tile[None].to(device), mirror_axes)[0].to("cpu", torch.float32)
            if two_d:
                output = output[:, None]
            weight = tile_weight[None] if two_d else tile_weight
            logits[(slice(None),) + tuple(slices)] += output * weight  # float32 product, rounded into the accumulator
            weights[slices] += weight
    logits /= weights
    if not torch.isfinite(logits).all():
        raise NnsegError(
            "sliding window: the blended logits are not finite (float16 overflow); predict again with "
            "accumulation_dtype=torch.float32."
        )
    crop = tuple(slice(before, size - after) for (before, after), size in zip(pads, shape, strict=True))
    return logits[(slice(None),) + crop].float()
