"""Distributed data parallel training: who this process is, its share of the batch, and cross-rank reductions.

The library never reads environment variables: the launcher (``torchrun`` through ``nnseg train``, or the
user's own script) initialises ``torch.distributed``; the trainer then asks ``torch.distributed`` for its rank
and world size. Without an initialised process group everything here is the single-process case.

As nnU-Net: the global batch is split over the ranks (5 over 2 gives ``[3, 2]``), each rank gets the
foreground-oversampling share that reproduces the global batch's forced samples, BatchNorm layers become
``SyncBatchNorm``, and the validation pseudo-Dice sums TP/FP/FN over every rank before the Dice.
Unlike nnU-Net, each rank's data stream is seeded (``seed + rank * RANK_SEED_STRIDE``), so a run is
reproducible and resumable under DDP too.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from nnseg.errors import ConfigError
from nnseg.training._pseudo_dice import ConfusionCounts

__all__ = [
    "GLOBAL_RNG_LOCK",
    "RANK_SEED_STRIDE",
    "DistributedContext",
    "rank_batch_sizes",
    "rank_oversampling",
]

# Serialises every use of torch's process-global generator by trainers (network init, RNG capture/restore),
# so trainers in different threads of one process do not see each other's seeds.
GLOBAL_RNG_LOCK = threading.RLock()
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a distributed run.

    Args:
        rank: Global rank (0 writes the run folder).
        world_size: Number of processes.
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"DistributedContext: rank {self.rank} is outside 0..{self.world_size - 1}.")

    @classmethod
    def current(cls) -> DistributedContext:
        """The context of the initialised ``torch.distributed`` process group, or the single-process one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_distributed(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and runs callbacks."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's data seed (``seed`` itself on rank 0, so one process gives the single-process stream)."""
        return seed + self.rank * RANK_SEED_STRIDE

    def sum(self, values: Sequence[float]) -> list[float]:
        """Sum ``values`` element-wise over the ranks (float64; identity without a process group)."""
        if not self.is_distributed or not values:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor]

    def sum_validation(self, losses: Sequence[float], counts: ConfusionCounts) -> tuple[float, ConfusionCounts]:
        """The mean validation loss and the TP/FP/FN of every rank (this rank's own without a process group)."""
        if not self.is_distributed:
            return sum(losses) / len(losses), counts
        n = len(counts.tp)
        total = self.sum([sum(losses), len(losses), *counts.tp, *counts.fp, *counts.fn])
        ints = [int(v) for v in total[2:]]
        return total[0] / total[1], ConfusionCounts(ints[:n], ints[n : 2 * n], ints[2 * n :])

    def merge(self, mapping: dict[str, Any]) -> dict[str, Any]:
        """The union of every rank's ``mapping`` (plain JSON values), on every rank."""
        if not self.is_distributed:
            return dict(mapping)
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, mapping)
        return {k: v for part in gathered for k, v in sorted(part.items())}

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        return bool(self.sum([1.0 if flag else 0.0])[0] > 0) if self.is_distributed else flag

    def barrier(self) -> None:
        """Wait for every rank (no-op without a process group)."""
        if self.is_distributed:
            dist.barrier()

    def wrap(self, network: nn.Module, device: torch.device) -> nn.Module:
        """``DistributedDataParallel(network)`` when distributed, else ``network`` itself."""
        if not self.is_distributed:
            return network
        device_ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(network, device_ids=device_ids)

    def sync_batchnorm(self, network: nn.Module, device: torch.device) -> nn.Module:
        """``network`` with its BatchNorm layers synchronised over the ranks when distributed (as nnU-Net).

        Instance normalisation (nnU-Net's default) has no cross-sample statistics and is left as it is. Torch's
        ``SyncBatchNorm`` runs on accelerators only, so a CPU (gloo) run keeps per-rank BatchNorm statistics.
        """
        if not self.is_distributed or device.type == "cpu":
            return network
        return nn.SyncBatchNorm.convert_sync_batchnorm(network)


def rank_batch_sizes(global_batch_size: int, world_size: int) -> list[int]:
    """Split a global batch over ranks as nnU-Net: ``global // world`` each, one more for the first remainder ranks.

    Raises:
        ConfigError: If there are more ranks than samples.
    """
    if world_size > global_batch_size:
        raise ConfigError(
            f"DDP: batch size {global_batch_size} cannot be split over {world_size} processes; every rank needs at "
            "least one sample. Use fewer processes or a plan with a larger batch size."
        )
    base, extra = divmod(global_batch_size, world_size)
    return [base + (1 if r < extra else 0) for r in range(world_size)]


def rank_oversampling(global_batch_size: int, world_size: int, oversample: float) -> list[float]:
    """Per-rank foreground oversampling that reproduces the global batch's forced samples exactly, as nnU-Net.

    Sample ``i`` of the global batch is forced iff ``i >= round(B * (1 - oversample))``. A rank holding samples
    ``[lo, hi)`` gets 0.0 if ``hi / B < 1 - oversample``, 1.0 if ``lo / B > 1 - oversample``, and otherwise the
    number of forced samples in its slice divided by its batch size (which its sampler rounds back to exactly
    that many). One process keeps ``oversample`` itself.
    """
    sizes = rank_batch_sizes(global_batch_size, world_size)
    if world_size == 1:
        return [float(oversample)]
    boundary = 1.0 - oversample
    first_forced = round(global_batch_size * boundary)
    shares, low = [], 0
    for size in sizes:
        high = low + size
        if high / global_batch_size < boundary:
            shares.append(0.0)
        elif low / global_batch_size > boundary:
            shares.append(1.0)
        else:
            shares.append(sum(1 for i in range(low, high) if i >= first_forced) / size)
        low = high
    return shares
