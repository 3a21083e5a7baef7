"""Sliding-window prediction of one preprocessed array: tiles, mirror test-time augmentation, Gaussian blending.

:func:`predict_logits` is the pure per-case core of inference: a network and a ``(c, z, y, x)`` array in,
logits of the same spatial shape out, with the options of an :class:`~nnseg.inference.InferenceSettings`. It
follows nnU-Net v2 step by step (centred zero padding, tile grid, mirroring over every non-empty combination of
the allowed axes). The tiles' logits are combined by the settings' accumulator (see
:mod:`nnseg.inference._accumulate`): Gaussian weights in float32 by default, nnU-Net's float16 sums on request.
Several tiles (and mirrored copies) can share one forward pass, and on CUDA the sums live on the device with
a fallback device when it runs out of memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nnseg.errors import ConfigError
from nnseg.inference._settings import InferenceSettings, settings_from_legacy
from nnseg.inference._tiling import padding_for_patch, tile_slices

__all__ = ["is_out_of_memory", "mirror_axis_combinations", "predict_logits", "predict_tile"]

logger = logging.getLogger(__name__)


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
    settings: InferenceSettings | None = None,
    **deprecated: Any,
) -> torch.Tensor:
    """Sliding-window logits of one case.

    Args:
        network: The network in eval mode, without deep supervision, already on ``settings.device``.
        data: Preprocessed ``(c, z, y, x)`` array (``(c, 1, y, x)`` for 2-D data).
        patch_size: The configuration's patch (2 entries for 2-D configurations: each slice along axis 0
            is predicted on its own).
        num_outputs: Output channels of the network (classes or regions).
        settings: Tile step, mirroring (``mirror_axes`` None: every axis of the patch), accumulator, tile batch
            size (halved down to 1 on an out-of-memory error), device, autocast and where the sums live (on
            ``fallback_device`` if ``device`` runs out of memory).
        **deprecated: The keyword arguments of nnseg 0.x (``step_size``, ``mirror_axes``, ``use_gaussian``,
            ``device``, ``accumulation_dtype``, ``amp``, ``batch_size``, ``accumulate_on_device``); they
            still work for one release, with a DeprecationWarning.

    Returns:
        ``(num_outputs, z, y, x)`` float32 logits on the CPU.

    Raises:
        ConfigError: If the array and patch disagree in dimensions.
        NnsegError: If the blended result is not finite (a float16 overflow).

    Example:
        >>> logits = predict_logits(network, case.data, plan.patch_size, 3, InferenceSettings(use_mirroring=False))
    """
    settings = _window_settings(settings, deprecated)
    array = _check_input(data, patch_size)
    device = settings.torch_device
    on_device = settings.accumulate_on_device if settings.accumulate_on_device is not None else device.type == "cuda"
    patch = tuple(int(p) for p in patch_size)
    window = _Window(network, patch, num_outputs, settings, settings.resolved_mirror_axes(range(len(patch))))
    fallback = settings.fallback_device
    if on_device and device.type != "cpu":
        try:
            return window.run(array, device)
        except RuntimeError as err:
            if fallback is None or not is_out_of_memory(err):
                raise
            logger.warning("sliding window: %s ran out of memory; accumulating on %s instead", device, fallback)
            _free_cache(device)
    return window.run(array, torch.device(fallback or "cpu"))


def _window_settings(settings: InferenceSettings | None, options: dict[str, Any]) -> InferenceSettings:
    """The settings of a :func:`predict_logits` call, from the old keywords if given (deprecated)."""
    if settings is None and not options:
        warnings.warn("predict_logits without settings is deprecated; pass settings=InferenceSettings(...) "
                      "(the old default was InferenceSettings(use_mirroring=False)).", DeprecationWarning,
                      stacklevel=3)  # fmt: skip
    resolved = settings_from_legacy("predict_logits", settings, options, allowed=_OLD_KEYWORDS,
                                    base=InferenceSettings(use_mirroring=False), stacklevel=4)  # fmt: skip
    if "mirror_axes" in options:  # old form: the axes themselves, None or empty for no mirroring
        axes = tuple(options["mirror_axes"] or ())
        resolved = dataclasses.replace(resolved, use_mirroring=bool(axes), mirror_axes=axes or None)
    return resolved


_OLD_KEYWORDS = {"step_size", "mirror_axes", "use_gaussian", "device", "accumulation_dtype", "amp", "batch_size",
                 "accumulate_on_device"}  # fmt: skip


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is a device (or host) out-of-memory error."""
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def _free_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_input(data: torch.Tensor | np.ndarray, patch_size: Sequence[int]) -> torch.Tensor:
    array = torch.as_tensor(np.asarray(data) if isinstance(data, np.ndarray) else data)
    if array.ndim != 4 or len(patch_size) not in (2, 3) or (len(patch_size) == 2 and array.shape[1] < 1):
        raise ConfigError(
            f"sliding window: expected data (c, z, y, x) and a 2- or 3-D patch; got data {tuple(array.shape)} and "
            f"patch {tuple(patch_size)}."
        )
    return array


class _Window:
    """One sliding-window configuration; :meth:`run` predicts one array."""

    def __init__(
        self, network: nn.Module, patch_size: tuple[int, ...], num_outputs: int, settings: InferenceSettings,
        mirror_axes: tuple[int, ...],
    ) -> None:  # fmt: skip
        self.network, self.patch_size, self.num_outputs = network, patch_size, num_outputs
        self.settings, self.mirror_axes, self.device = settings, mirror_axes, settings.torch_device
        self.amp = settings.amp if settings.amp is not None else self.device.type == "cuda"

    def run(self, array: torch.Tensor, where: torch.device) -> torch.Tensor:
        """Blend the tiles of ``array`` with an accumulator on ``where``; return the cropped float32 logits."""
        pads = padding_for_patch(tuple(array.shape[1:]), self.patch_size)
        padded = torch.nn.functional.pad(array, [p for pair in reversed(pads) for p in pair], value=0.0)
        shape = tuple(padded.shape[1:])
        accumulator = self.settings.new_accumulator()
        accumulator.start(self.num_outputs, shape, self.patch_size, where)
        tiles = list(tile_slices(shape, self.patch_size, self.settings.tile_step_size))
        autocast = torch.autocast(self.device.type) if self.amp else contextlib.nullcontext()
        batch_size, start = self.settings.batch_size, 0
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
                    accumulator.add(slices, output)
                start += len(batch)
            logits = accumulator.result()
        crop = tuple(slice(before, size - after) for (before, after), size in zip(pads, shape, strict=True))
        return logits[(slice(None),) + crop].to("cpu", torch.float32)

    @property
    def copies(self) -> int:
        """Network inputs per tile: the tile and its mirrored copies."""
        return len(mirror_axis_combinations(self.mirror_axes)) + 1 if self.mirror_axes else 1

    def _forward(self, padded: torch.Tensor, batch: list[tuple[slice, ...]], batch_size: int) -> torch.Tensor:
        two_d = len(self.patch_size) == 2
        stacked = torch.stack(
            [padded[(slice(None),) + s][:, 0] if two_d else padded[(slice(None),) + s] for s in batch]
        )
        outputs = predict_tile(self.network, stacked.to(self.device), self.mirror_axes, batch_size)
        return outputs[:, :, None] if two_d else outputs
