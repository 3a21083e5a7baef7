"""Accumulators: how the sliding window combines the logits of overlapping tiles into one array.

The sliding window (the inferer) cuts tiles, runs the network and hands each tile's logits with its slices to
an :class:`Accumulator` (the aggregator); the accumulator returns the combined array. Swapping the weighting
or the numerics is a new accumulator, not a flag threaded through the predictor:

* :class:`GaussianAccumulator` (default): Gaussian importance weights, float32 sums (cannot overflow);
* :class:`Float16GaussianAccumulator`: the same weights summed in float16, nnU-Net v2's numerics bit for bit;
* :class:`ConstantAccumulator`: every voxel of a tile weighs the same (a plain average of the tiles).

A new weighting subclasses :class:`WeightedAccumulator` and implements :meth:`~WeightedAccumulator.tile_weight`.
An accumulator given to :class:`~nnseg.inference.InferenceSettings` is a prototype: each case is combined in
a shallow copy, so one settings object can serve several predictions.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch

from nnseg.errors import NnsegError
from nnseg.inference._tiling import gaussian_importance_map

__all__ = [
    "ACCUMULATORS",
    "Accumulator",
    "ConstantAccumulator",
    "Float16GaussianAccumulator",
    "GaussianAccumulator",
    "WeightedAccumulator",
]


class Accumulator(abc.ABC):
    """Combine the logits of the tiles of one case (MONAI's aggregator, nnU-Net's blending).

    The sliding window calls :meth:`start` once per case, :meth:`add` once per tile and :meth:`result` at the
    end. Subclasses set :attr:`name` (recorded in prediction manifests) and :attr:`dtype` (the precision of
    the sums; the export resamples float16 sums in float16, as nnU-Net does).
    """

    name: ClassVar[str] = ""
    dtype: ClassVar[torch.dtype] = torch.float32

    @abc.abstractmethod
    def start(
        self, num_outputs: int, shape: tuple[int, ...], patch_size: tuple[int, ...], device: torch.device
    ) -> None:
        """Prepare empty sums for a ``(num_outputs, *shape)`` result on ``device``.

        Args:
            num_outputs: Channels of the network's output.
            shape: Spatial shape of the (padded) array the tiles come from.
            patch_size: The network's patch (2 entries for a 2-D network on a ``(1, y, x)`` slab per tile).
            device: Where the sums live.
        """

    @abc.abstractmethod
    def add(self, slices: tuple[slice, ...], logits: torch.Tensor) -> None:
        """Add one tile's float32 ``(num_outputs, *tile)`` logits at the spatial ``slices`` of the array."""

    @abc.abstractmethod
    def result(self) -> torch.Tensor:
        """The combined ``(num_outputs, *shape)`` logits (any float dtype, on the accumulator's device).

        Raises:
            NnsegError: If the combined logits are not finite.
        """

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and _public(vars(other)) == _public(vars(self))

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _public(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if not key.startswith("_")}


class WeightedAccumulator(Accumulator):
    """Weighted average of the tiles: ``sum(weight * logits) / sum(weight)`` per voxel, in :attr:`dtype`.

    Subclasses give the per-voxel weight of a tile with :meth:`tile_weight`; the weights must be positive.
    """

    _logits: torch.Tensor
    _weights: torch.Tensor
    _tile_weight: torch.Tensor

    @abc.abstractmethod
    def tile_weight(self, patch_size: tuple[int, ...]) -> np.ndarray:
        """The weight of every voxel of a tile, an array of shape ``patch_size`` (cast to :attr:`dtype`)."""

    def start(
        self, num_outputs: int, shape: tuple[int, ...], patch_size: tuple[int, ...], device: torch.device
    ) -> None:
        """Allocate zeroed sums and the tile weight on ``device`` (see :meth:`Accumulator.start`)."""
        numpy_dtype = torch.empty((), dtype=self.dtype).numpy().dtype
        weight = torch.from_numpy(np.asarray(self.tile_weight(patch_size), dtype=numpy_dtype))
        self._tile_weight = (weight[None] if len(patch_size) < len(shape) else weight).to(device)
        self._logits = torch.zeros((num_outputs, *shape), dtype=self.dtype, device=device)
        self._weights = torch.zeros(shape, dtype=self.dtype, device=device)

    def add(self, slices: tuple[slice, ...], logits: torch.Tensor) -> None:
        """Add ``weight * logits`` and ``weight`` at ``slices``."""
        self._logits[(slice(None),) + slices] += logits * self._tile_weight  # product in float32, rounded on add
        self._weights[slices] += self._tile_weight

    def result(self) -> torch.Tensor:
        """The weighted average (see :meth:`Accumulator.result`)."""
        logits = self._logits
        logits /= self._weights
        if not torch.isfinite(logits).all():
            raise NnsegError(
                f"sliding window: the blended logits are not finite ({type(self).__name__} sums in {self.dtype}: a "
                "float16 overflow, or a network output that is not finite); predict again with the default "
                "accumulator (InferenceSettings(accumulator='gaussian'), float32)."
            )
        return logits


class GaussianAccumulator(WeightedAccumulator):
    """nnU-Net's Gaussian importance weighting (sigma = patch / 8, maximum 10), summed in float32."""

    name: ClassVar[str] = "gaussian"

    def tile_weight(self, patch_size: tuple[int, ...]) -> np.ndarray:
        """The Gaussian importance map, zeros fixed after the cast to :attr:`dtype`."""
        return gaussian_importance_map(patch_size, torch.empty((), dtype=self.dtype).numpy().dtype)


class Float16GaussianAccumulator(GaussianAccumulator):
    """nnU-Net v2's blending: Gaussian weights summed in float16 (its logits bit for bit, but may overflow)."""

    name: ClassVar[str] = "nnunet_float16"
    dtype: ClassVar[torch.dtype] = torch.float16


class ConstantAccumulator(WeightedAccumulator):
    """Every voxel of every tile weighs the same: the plain average of the overlapping tiles."""

    name: ClassVar[str] = "constant"

    def tile_weight(self, patch_size: tuple[int, ...]) -> np.ndarray:
        """Ones over the patch."""
        return np.ones(patch_size, dtype=np.float32)


ACCUMULATORS: dict[str, type[Accumulator]] = {
    cls.name: cls for cls in (GaussianAccumulator, Float16GaussianAccumulator, ConstantAccumulator)
}
"""The built-in accumulators by name (what ``InferenceSettings(accumulator=<name>)`` accepts)."""
