"""Sliding-window prediction of one preprocessed array: tiles, mirror test-time augmentation, Gaussian blending.

:func:`predict_logits` is the pure per-case core of inference: a network and a ``(c, z, y, x)`` array in,
logits of the same spatial shape out. It follows nnU-Net v2 step by step (centred zero padding, tile grid,
mirroring over every non-empty combination of the allowed axes, Gaussian weights). Accumulation is in float32
by default, which cannot overflow; ``accumulation_dtype=torch.float16`` gives nnU-Net's logits bit for bit.
Several tiles (and mirrored copies) can share one forward pass, and on CUDA the accumulators live on the device with a fallback to
the CPU when the device runs out of memory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nnseg.errors import ConfigError, NnsegError
from nnseg.inference._tiling import gaussian_importance_map, padding_for_patch, tile_slices

__all__ = ["is_out_of_memory", "mirror_axis_combinations", "predict_logits", "predict_tile"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 4
"""Network inputs per forward pass by default: on a 2-core CPU 1.6x (no TTA) to 2.7x (TTA) faster than one at a
time, at nnU-Net's peak memory (benchmarks/bench_predict.py)."""


def mirror_axis_combinations(mirror_axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial ``mirror_axes``, as tensor dims of a batched input."""
    dims = [a + 2 for a in mirror_axes]
    return [combo for size in range(1, len(dims) + 1) for combo in itertools.combinations(dims, size)]


def predict_tile(
    network: nn.Module, tile: torch.Tensor, mirror_axes: Sequence[int] | None, batch_size: int = 1
) -> torch.Tensor:
    """Network output for a batch of tiles, averaged over the mirrored copies (logit space).

    Args:
        network: The network.
        tile: ``(n, c, *patch)`` tiles.
        mirror_axes: Spatial axes to mirror (every non-empty combination is predicted), or None.
        batch_size: Up to this many inputs (tiles and mirrored copies) go through the network together; with
            at most ``n`` the copies are predicted one combination after the other, as nnU-Net does.
    """
    combos = mirror_axis_combinations(mirror_axes) if mirror_axes else []
    if batch_size <= tile.shape[0] or not combos:
        prediction = network(tile)
        for dims in combos:
            prediction = prediction + torch.flip(network(torch.flip(tile, dims)), dims)
    else:
        inputs = torch.cat([tile, *(torch.flip(tile, dims) for dims in combos)])
        outputs = torch.cat([network(chunk) for chunk in torch.split(inputs, batch_size)])
        parts = torch.split(outputs, tile.shape[0])
        prediction = parts[0]
        for dims, part in zip(combos, parts[1:], strict=True):
            prediction = prediction + torch.flip(part, dims)
    return prediction / (len(combos) + 1) if combos else prediction


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
    accumulation_dtype: torch.dtype = torch.float32,
    amp: bool | None = None,
    batch_size: int | None = None,
    accumulate_on_device: bool | None = None,
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
        device: Where the network runs.
        accumulation_dtype: dtype of the accumulators. float32 (default) cannot overflow; float16 reproduces
            nnU-Net's predictor bit for bit (with ``batch_size=1``).
        amp: Run the network under autocast; None means on CUDA only.
        batch_size: Network inputs (tiles and their mirrored copies) per forward pass. More is faster when
            memory allows; on an out-of-memory error it is halved down to 1. None: :data:`DEFAULT_BATCH_SIZE`.
            nnU-Net uses 1.
        accumulate_on_device: Keep the accumulators on ``device``; None means on CUDA only. If the device
            runs out of memory the case is predicted again with CPU accumulators.

    Returns:
        ``(num_outputs, z, y, x)`` float32 logits on the CPU.

    Raises:
        ConfigError: If the array and patch disagree in dimensions, or ``batch_size < 1``.
        NnsegError: If the blended result is not finite (a float16 overflow).
    """
    array = _check_input(data, patch_size, 1 if batch_size is None else batch_size)
    device = torch.device(device)
    on_device = accumulate_on_device if accumulate_on_device is not None else device.type == "cuda"
    window = _Window(network, tuple(int(p) for p in patch_size), num_outputs, step_size, mirror_axes,
                     use_gaussian, device, accumulation_dtype, amp)  # fmt: skip
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if on_device and device.type != "cpu":
        try:
            return window.run(array, device, batch_size)
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            logger.warning("sliding window: %s ran out of memory; accumulating on the CPU instead", device)
            _free_cache(device)
    return window.run(array, torch.device("cpu"), batch_size)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a device (or host) out-of-memory error."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_input(data: torch.Tensor | np.ndarray, patch_size: Sequence[int], batch_size: int) -> torch.Tensor:
    array = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data)
    if array.ndim != 4 or len(patch_size) not in (2, 3) or (len(patch_size) == 2 and array.shape[1] < 1):
        raise ConfigError(
            f"sliding window: expected data (c, z, y, x) and a 2- or 3-D patch; got data {tuple(array.shape)} and "
            f"patch {tuple(patch_size)}."
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"sliding window: batch_size must be a positive int; got {batch_size!r}.")
    return array


class _Window:
    """One sliding-window configuration; :meth:`run` predicts one array."""

    def __init__(
        self, network: nn.Module, patch_size: tuple[int, ...], num_outputs: int, step_size: float,
        mirror_axes: Sequence[int] | None, use_gaussian: bool, device: torch.device, dtype: torch.dtype,
        amp: bool | None,
    ) -> None:  # fmt: skip
        self.network, self.patch_size, self.num_outputs = network, patch_size, num_outputs
        self.step_size, self.mirror_axes, self.device, self.dtype = step_size, mirror_axes, device, dtype
        self.use_gaussian = use_gaussian
        self.amp = amp if amp is not None else device.type == "cuda"

    def _tile_weight(self, where: torch.device) -> torch.Tensor:
        numpy_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        gaussian = torch.from_numpy(gaussian_importance_map(self.patch_size, numpy_dtype))  # zeros fixed in this dtype
        weight = gaussian if self.use_gaussian else torch.ones_like(gaussian)
        return (weight[None] if len(self.patch_size) == 2 else weight).to(where)

    def run(self, array: torch.Tensor, where: torch.device, batch_size: int) -> torch.Tensor:
        """Blend the tiles of ``array`` into accumulators on ``where``; return the cropped float32 logits."""
        pads = padding_for_patch(tuple(array.shape[1:]), self.patch_size)
        padded = torch.nn.functional.pad(array, [p for pair in reversed(pads) for p in pair], value=0.0)
        shape = tuple(padded.shape[1:])
        logits = torch.zeros((self.num_outputs, *shape), dtype=self.dtype, device=where)
        weights = torch.zeros(shape, dtype=self.dtype, device=where)
        tile_weight = self._tile_weight(where)
        tiles = list(tile_slices(shape, self.patch_size, self.step_size))
        autocast = torch.autocast(self.device.type) if self.amp else contextlib.nullcontext()
        start = 0
        with torch.inference_mode(), autocast:
            while start < len(tiles):
                batch = tiles[start : start + max(batch_size // self.copies, 1)]
                try:
                    outputs = self._forward(padded, batch, batch_size).to(where, torch.float32)
                except RuntimeError as err:
                    if batch_size == 1 or not is_out_of_memory(err):
                        raise
                    batch_size = max(batch_size // 2, 1)
                    logger.info("sliding window: out of memory; batch size %d now", batch_size)
                    _free_cache(self.device)
                    continue
                for slices, output in zip(batch, outputs, strict=True):
                    logits[(slice(None),) + slices] += output * tile_weight  # float32 product, rounded on add
                    weights[slices] += tile_weight
                start += len(batch)
        return self._finish(logits, weights, pads, shape)

    @property
    def copies(self) -> int:
        """Network inputs per tile: the tile and its mirrored copies."""
        return len(mirror_axis_combinations(self.mirror_axes)) + 1 if self.mirror_axes else 1

    def _forward(self, padded: torch.Tensor, batch: list[tuple[slice, ...]], batch_size: int) -> torch.Tensor:
        two_d = len(self.patch_size) == 2
        stacked = torch.stack([padded[(slice(None),) + s][:, 0] if two_d else padded[(slice(None),) + s] for s in batch])
        outputs = predict_tile(self.network, stacked.to(self.device), self.mirror_axes, batch_size)
        return outputs[:, :, None] if two_d else outputs

    @staticmethod
    def _finish(
        logits: torch.Tensor, weights: torch.Tensor, pads: list[tuple[int, int]], shape: tuple[int, ...]
    ) -> torch.Tensor:
        logits /= weights
        if not torch.isfinite(logits).all():
            raise NnsegError(
                "sliding window: the blended logits are not finite (a float16 overflow, or a network output "
                "that is not finite); predict again with accumulation_dtype=torch.float32."
            )
        crop = tuple(slice(before, size - after) for (before, after), size in zip(pads, shape, strict=True))
        return logits[(slice(None),) + crop].to("cpu", torch.float32)
