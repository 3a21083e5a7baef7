"""One training batch as a pure function of ``(seed, step)``: the core the loaders run in their workers.

The generator of step ``s`` is ``numpy.random.SeedSequence([seed, s])``; it is split into one child for
the case draw and the forced-foreground flags and one child per sample (corner and augmentation). Torch
work runs with one intra-op thread (restored afterwards), so float reductions, and with them the batches,
are bit-identical in the main process and in any worker.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import get_worker_info

from nnseg._checks import parse_int
from nnseg.errors import LoaderError, NnsegError
from nnseg.preprocessing import PreprocessedStore
from nnseg.training._augmentation import AugmentationConfig, augment_sample, make_targets
from nnseg.training._sampling import PatchSampler, SampledPatch

__all__ = ["Batch", "BatchFactory", "LoaderError", "check_training_cases"]

_LOCATION_CACHE_CASES = 64  # class locations are small (<= 10k voxels per class); 64 cases bound the memory


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch.

    Args:
        data: float32 ``(B, C, *patch)``.
        target: One tensor per deep-supervision output, highest resolution first: int16 ``(B, 1, *s)``
            labels, or bool ``(B, R, *s)`` regions.
        case_ids: The case of each sample.
        step: The global step the batch belongs to.
    """

    data: torch.Tensor
    target: tuple[torch.Tensor, ...]
    case_ids: tuple[str, ...]
    step: int

    def pin_memory(self) -> Batch:
        """Return a copy in page-locked memory (called by the loader on CUDA machines)."""
        return Batch(self.data.pin_memory(), tuple(t.pin_memory() for t in self.target), self.case_ids, self.step)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        """Return the batch on ``device``."""
        return Batch(
            self.data.to(device, non_blocking=non_blocking),
            tuple(t.to(device, non_blocking=non_blocking) for t in self.target),
            self.case_ids,
            self.step,
        )


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    if previous != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if previous != 1:
            torch.set_num_threads(previous)


class BatchFactory:
    """Build the batch of any step from the store: ``factory(step) -> Batch``, pure in ``(seed, step)``.

    Args:
        store: The preprocessed store.
        case_ids: The cases to draw from (e.g. a split's training ids), in a fixed order.
        sampler: Where patches are cut (its ``patch_size`` is the final patch).
        augmentation: The transforms and target settings.
        seed: The run's seed (a non-negative integer).
        augment: Run the random transforms (False for validation: only the target steps run).

    Raises:
        ConfigError: If ``seed`` is negative or not an integer.
    """

    def __init__(
        self,
        store: PreprocessedStore,
        case_ids: Sequence[str],
        sampler: PatchSampler,
        augmentation: AugmentationConfig,
        *,
        seed: int,
        augment: bool = True,
    ) -> None:
        self.store = store
        self.case_ids = tuple(case_ids)
        self.sampler = sampler
        self.augmentation = augmentation
        self.seed = parse_int("BatchFactory", "seed", seed, minimum=0)
        self.augment = bool(augment)
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._locations: OrderedDict[str, Mapping[str, np.ndarray] | None] = OrderedDict()

    def rngs(self, step: int) -> tuple[np.random.Generator, list[np.random.Generator]]:
        """The batch-level generator and one generator per sample for ``step``.

        Raises:
            ConfigError: If ``step`` is negative or not an integer.
        """
        step = parse_int("BatchFactory", "step", step, minimum=0)  # global steps count from 0
        children = np.random.SeedSequence([self.seed, step]).spawn(self.sampler.batch_size + 1)
        return np.random.default_rng(children[0]), [np.random.default_rng(c) for c in children[1:]]

    def _shape(self, case_id: str) -> tuple[int, ...]:
        if case_id not in self._shapes:
            self._shapes[case_id] = tuple(self.store.read_properties(case_id).shape_after_resampling)
        return self._shapes[case_id]

    def _class_locations(self, case_id: str) -> Mapping[str, np.ndarray] | None:
        """The case's class locations, from a small per-process cache (they are re-read for every sample else)."""
        if case_id in self._locations:
            self._locations.move_to_end(case_id)
            return self._locations[case_id]
        locations = self.store.read_class_locations(case_id)
        self._locations[case_id] = locations
        if len(self._locations) > _LOCATION_CACHE_CASES:
            self._locations.popitem(last=False)
        return locations

    def crop(self, case_id: str, force: bool, rng: np.random.Generator) -> SampledPatch:
        """Cut one sample's (initial) patch: the first use of the sample's generator."""
        return self.sampler.sample(self.store.read_patch, case_id, self._shape(case_id),
                                   self._class_locations(case_id), force, rng)  # fmt: skip

    def sample(
        self, case_id: str, force: bool, rng: np.random.Generator
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Cut, augment and convert one sample; returns the data and its targets."""
        patch = self.crop(case_id, force, rng)
        if self.augment:
            data, seg = augment_sample(patch.data, patch.seg, self.sampler.patch_size, self.augmentation, rng)
        else:
            data, seg = torch.from_numpy(patch.data.copy()), torch.from_numpy(patch.seg.copy())
        return make_targets(data, seg, self.augmentation)

    def __call__(self, step: int, *, shared_memory: bool | None = None) -> Batch:
        """Return the batch of global step ``step``.

        Args:
            step: The global step.
            shared_memory: Build the batch's tensors directly in shared memory, so handing the batch to another
                process copies nothing. None (default): only inside a loader worker process. The values are
                the same either way.

        Raises:
            LoaderError: If a sample fails; the message names the step, the sample and the case.
        """
        batch_rng, sample_rngs = self.rngs(step)
        if shared_memory is None:
            shared_memory = get_worker_info() is not None
        forced = self.sampler.forced_foreground(batch_rng)
        cases = self.sampler.choose_cases(self.case_ids, batch_rng)
        datas, targets = [], []
        with _one_thread():
            for j, (case_id, force, rng) in enumerate(zip(cases, forced, sample_rngs)):
                try:
                    data, target = self.sample(case_id, force, rng)
                except Exception as err:
                    raise LoaderError(
                        f"step {step}, sample {j}: case {case_id!r} failed in the data pipeline: "
                        f"{type(err).__name__}: {err}"
                    ) from err
                datas.append(data)
                targets.append(target)
            try:
                stacked = tuple(stack_tensors([t[k] for t in targets], shared_memory) for k in range(len(targets[0])))
                return Batch(stack_tensors(datas, shared_memory), stacked, cases, int(step))
            except RuntimeError as err:
                shapes = ", ".join(f"{case_id} {tuple(d.shape)}" for case_id, d in zip(cases, datas))
                raise LoaderError(
                    f"step {step}: the samples do not stack into one batch ({shapes}); every case of a store must "
                    "have the same channels. Preprocess the odd case again or remove it from the split."
                ) from err


def stack_tensors(tensors: list[torch.Tensor], shared_memory: bool) -> torch.Tensor:
    """``torch.stack``, optionally into a fresh shared-memory tensor (same values either way)."""
    if not shared_memory or len({(t.shape, t.dtype) for t in tensors}) != 1:
        return torch.stack(tensors)  # mismatched shapes: torch.stack raises the error the caller explains
    out = torch.empty((len(tensors), *tensors[0].shape), dtype=tensors[0].dtype).share_memory_()
    return torch.stack(tensors, out=out)


def check_training_cases(store: PreprocessedStore, case_ids: Sequence[str], sampler: PatchSampler) -> None:
    """Check the cases a loader will draw from: readable, labelled; warn about odd but usable ones.

    Raises:
        LoaderError: If there is no case, or a case is incomplete or has no segmentation.

    Warns:
        UserWarning: Naming cases without any foreground (forced samples fall back to random crops) and
            cases smaller than the patch on some axis (they are padded).
    """
    if not case_ids:
        raise LoaderError(f"no case ids given for store {store.root}; pass the training cases of a split.")
    empty, small = [], []
    for case_id in case_ids:
        try:
            shape = store.read_properties(case_id).shape_after_resampling
            locations = store.read_class_locations(case_id)
        except NnsegError as err:
            raise LoaderError(f"case {case_id!r} cannot be used for training: {err}") from err
        if locations is None:
            raise LoaderError(
                f"case {case_id!r} in store {store.root} has no segmentation; training needs labelled cases. "
                "Remove it from the split or add its label and preprocess again."
            )
        if not _has_foreground(locations):
            empty.append(case_id)
        patch = (1, *sampler.patch_size) if len(sampler.patch_size) == 2 else sampler.patch_size
        if any(s < p for s, p in zip(shape, patch)):
            small.append(f"{case_id} {tuple(shape)}")
    _warn(empty, "have no foreground voxel at all; foreground-forced samples of them are random crops")
    _warn(small, f"are smaller than the patch {sampler.patch_size} on some axis; their patches are padded "
                 "(data with 0, labels with -1)")  # fmt: skip


def _has_foreground(locations: Mapping[str, np.ndarray]) -> bool:
    return any(len(v) for key, v in locations.items() if not key.replace(" ", "").startswith("(-1,"))


def _warn(cases: list[str], what: str) -> None:
    if cases:
        shown = ", ".join(cases[:10]) + (f" and {len(cases) - 10} more" if len(cases) > 10 else "")
        warnings.warn(f"{len(cases)} training case(s) {what}: {shown}.", stacklevel=3)
