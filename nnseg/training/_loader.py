"""Training and validation loaders: worker processes, prefetching, pinned memory, deterministic per step.

The batch of step ``s`` is :class:`~nnseg.training._batches.BatchFactory` ``(s)``: a pure function of the seed and
``s``. Workers (``torch.utils.data.DataLoader`` processes) each compute whole batches and the loader yields
them in step order, so the stream is identical with 0, 1 or any number of workers, and a loader started at
step ``s`` continues exactly where an uninterrupted one would be. A failing sample raises
:class:`LoaderError` naming the step and case in the main process; a dying worker raises too (torch's
watchdog); closing the iterator, an exception or Ctrl-C shuts the workers down.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from nnseg._checks import parse_bool, parse_int
from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore
from nnseg.training._augment_device import CropFactory, CroppedBatch, DeviceAugmenter
from nnseg.training._augmentation import AugmentationConfig
from nnseg.training._batches import Batch, BatchFactory, LoaderError, check_training_cases
from nnseg.training._sampling import PatchSampler

__all__ = ["TrainingLoader", "ValidationLoader", "iterate_batches"]

T = TypeVar("T")


class _Steps(Dataset[T]):
    """Map-style view of a factory: item ``s`` is the batch of step ``s``."""

    def __init__(self, factory: Callable[[int], T]) -> None:
        self.factory = factory

    def __getitem__(self, step: int) -> T:
        # in a worker the factory builds the batch in shared memory: the main process gets a handle, no copy
        return self.factory(step)


def _worker_init(worker_id: int) -> None:
    """Give each worker process one thread per numeric library (they run side by side, one per core).

    Only ever runs inside worker processes nnseg started; environment variables are neither read nor set.
    """
    torch.set_num_threads(1)
    itk = sys.modules.get("SimpleITK")  # never imported for this alone
    if itk is not None:
        itk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        from threadpoolctl import threadpool_limits  # optional: numpy's / scipy's BLAS and OpenMP pools
    except ImportError:
        return
    threadpool_limits(1)


def iterate_batches(
    factory: Callable[[int], T],
    steps: Iterable[int],
    *,
    num_workers: int = 0,
    prefetch: int = 2,
    pin_memory: bool = False,
    multiprocessing_context: str | None = None,
) -> Generator[T, None, None]:
    """Yield ``factory(s)`` for every ``s`` in ``steps``, in order, computed by ``num_workers`` processes.

    Args:
        factory: The batch function (a :class:`BatchFactory`, or any picklable ``step -> batch`` callable whose
            batches have a ``pin_memory`` method or are tensors).
        steps: The global steps (may be infinite, e.g. ``itertools.count(start)``).
        num_workers: Worker processes; 0 computes every batch in this process.
        prefetch: Batches each worker prepares ahead.
        pin_memory: Put batches in page-locked memory (only when CUDA is available).
        multiprocessing_context: ``"fork"``, ``"spawn"`` or ``"forkserver"``; None is torch's default.
    """
    if num_workers == 0:
        for step in steps:
            batch = factory(step)
            yield batch.pin_memory() if pin_memory and torch.cuda.is_available() else batch  # type: ignore[attr-defined]
        return
    loader = DataLoader(
        _Steps(factory), batch_size=None, sampler=steps, num_workers=num_workers,  # type: ignore[arg-type]
        prefetch_factor=prefetch, pin_memory=pin_memory and torch.cuda.is_available(),
        worker_init_fn=_worker_init, multiprocessing_context=multiprocessing_context,
    )  # fmt: skip
    iterator = iter(loader)
    try:
        yield from iterator
    except RuntimeError as err:
        if isinstance(err, LoaderError) or "exited unexpectedly" not in str(err):
            raise
        raise LoaderError(
            f"a data loader worker process died ({err}); it was killed (out of memory?) or crashed in native code. "
            "Retry with fewer workers or num_workers=0 to see the failing case."
        ) from err
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        del iterator


def _check_workers(num_workers: int, prefetch: int) -> None:
    if int(num_workers) < 0 or int(prefetch) < 1:
        raise ConfigError(f"num_workers must be >= 0 and prefetch >= 1; got {num_workers} and {prefetch}.")


class TrainingLoader:
    """The training batch stream of one configuration: nnU-Net's sampling and augmentation, step-deterministic.

    Args:
        store: The preprocessed store.
        case_ids: Training cases (a split's ``train`` ids).
        plan: The configuration (patch size, batch size, ``use_mask_for_norm``, network strides).
        spec: The dataset's labels (regions, ignore label).
        seed: The run's seed; step ``s`` always gives the same batch for the same seed.
        augmentation: Transforms; defaults to :meth:`AugmentationConfig.for_plan`.
        batch_size: Overrides ``plan.batch_size``.
        oversample_foreground_percent: Fraction of each batch forced to contain foreground.
        probabilistic_oversampling: Force each sample with that probability instead.
        deep_supervision: One target per network output (else a single full-resolution target).
        num_workers: Worker processes (0: in this process).
        prefetch: Batches each worker prepares ahead.
        pin_memory: Page-locked batches for fast host-to-GPU copies (ignored without CUDA).
        multiprocessing_context: Start method of the workers (None: torch's default).
        augmentation_device: Opt-in device-side augmentation (e.g. ``"cuda"``; any torch device): the workers
            only crop and the rotation / scaling, intensity transforms, mirroring and targets run on that
            device, which the batches then live on. The same crops and transform parameters as the CPU
            pipeline for every step, not the same bits (see :class:`~nnseg.training.DeviceAugmenter`).
            None (default): everything on the CPU in the workers.

    Example:
        >>> loader = TrainingLoader(store, split.train, plans["3d_fullres"], ds.spec, seed=0, num_workers=4)
        >>> for batch in loader.iterate(start_step=1250):   # resumes the stream exactly
        ...     loss = step(batch.data, batch.target)
    """

    def __init__(
        self,
        store: PreprocessedStore,
        case_ids: Sequence[str],
        plan: ConfigurationPlan,
        spec: DatasetSpec,
        *,
        seed: int = 0,
        augmentation: AugmentationConfig | None = None,
        batch_size: int | None = None,
        oversample_foreground_percent: float = 0.33,
        probabilistic_oversampling: bool = False,
        deep_supervision: bool = True,
        num_workers: int = 2,
        prefetch: int = 2,
        pin_memory: bool = False,
        multiprocessing_context: str | None = None,
        augmentation_device: str | torch.device | None = None,
    ) -> None:
        _check_workers(num_workers, prefetch)
        self.augmentation = augmentation or AugmentationConfig.for_plan(plan, spec, deep_supervision=deep_supervision)
        self.sampler = PatchSampler(
            plan.patch_size, initial_patch_size=self.augmentation.initial_patch_size(plan.patch_size),
            batch_size=plan.batch_size if batch_size is None else batch_size,
            oversample_foreground_percent=oversample_foreground_percent,
            probabilistic_oversampling=probabilistic_oversampling, has_ignore_label=spec.ignore_label is not None,
        )  # fmt: skip
        self.factory = BatchFactory(store, case_ids, self.sampler, self.augmentation, seed=seed)
        self.num_workers, self.prefetch, self.pin_memory = int(num_workers), int(prefetch), bool(pin_memory)
        self.multiprocessing_context = multiprocessing_context
        self.device_augmenter = None if augmentation_device is None else DeviceAugmenter(
            self.augmentation, self.sampler.patch_size, augmentation_device)  # fmt: skip
        self._checked = False

    def check(self) -> None:
        """Check the cases once (labelled, readable); warn about cases without foreground or smaller than the patch.

        Raises:
            LoaderError: If a case is unusable.
        """
        if not self._checked:
            check_training_cases(self.factory.store, self.factory.case_ids, self.sampler)
            self._checked = True

    def batch(self, step: int) -> Batch:
        """Return the batch of global step ``step``, computed in this process."""
        if self.device_augmenter is not None:
            return self.device_augmenter(CropFactory(self.factory)(step))
        return self.factory(step)

    def iterate(self, start_step: int = 0, num_steps: int | None = None) -> Generator[Batch, None, None]:
        """Yield the batches of steps ``start_step, start_step + 1, ...`` (``num_steps`` of them, or forever).

        Close the iterator (``iterator.close()``, leaving a ``for`` loop, an exception) to stop the workers.

        Raises:
            ConfigError: If ``start_step`` or ``num_steps`` is negative.
            LoaderError: If a case is unusable (see :meth:`check`).
        """
        if int(start_step) < 0 or (num_steps is not None and int(num_steps) < 0):
            raise ConfigError(
                f"start_step and num_steps must be >= 0; got {start_step} and {num_steps}. Resume with "
                "start_step=checkpoint step (0 for a new run)."
            )
        self.check()
        stop = None if num_steps is None else int(start_step) + int(num_steps)
        steps: Iterable[int] = itertools.count(int(start_step)) if stop is None else range(int(start_step), stop)
        options = {"num_workers": self.num_workers, "prefetch": self.prefetch, "pin_memory": self.pin_memory,
                   "multiprocessing_context": self.multiprocessing_context}  # fmt: skip
        if self.device_augmenter is None:
            return iterate_batches(self.factory, steps, **options)  # type: ignore[arg-type]
        return _augmented(self.device_augmenter, iterate_batches(CropFactory(self.factory), steps, **options))  # type: ignore[arg-type]


def _augmented(augmenter: DeviceAugmenter, crops: Generator[CroppedBatch, None, None]) -> Generator[Batch, None, None]:
    """Augment each worker crop batch on the device, in step order; closing this closes the workers too."""
    try:
        for cropped in crops:
            yield augmenter(cropped)
    finally:
        crops.close()


class ValidationLoader:
    """The validation batches of each epoch: no augmentation, a pure function of ``(seed, epoch)``.

    By default every epoch validates on the same ``num_batches`` batches; with ``resample_each_epoch`` epoch
    ``e`` gets its own batches (those of steps ``e * num_batches ...``), still the same for the same seed and
    epoch, so a resumed run validates exactly as an uninterrupted one.

    Like nnU-Net's validation pipeline, only the target steps run (-1 -> 0, regions, deep-supervision
    targets); ``use_mask_for_norm`` masking is a training-only step.

    Args:
        store: The preprocessed store.
        case_ids: Validation cases.
        plan: The configuration.
        spec: The dataset's labels.
        num_batches: Batches per validation (nnU-Net: 50).
        seed: Seed of the fixed sequence.
        batch_size: Overrides ``plan.batch_size``.
        oversample_foreground_percent: As for training.
        probabilistic_oversampling: As for training (nnU-Net uses the training setting for validation too).
        deep_supervision: One target per network output.
        num_workers: Worker processes (0: in this process).
        prefetch: Batches each worker prepares ahead.
        pin_memory: Page-locked batches (ignored without CUDA).
        multiprocessing_context: Start method of the workers.
        resample_each_epoch: New batches every epoch instead of the same ones.

    Example:
        >>> for batch in loader.batches(epoch=3):
        ...     loss = evaluate(batch)
    """

    def __init__(
        self,
        store: PreprocessedStore,
        case_ids: Sequence[str],
        plan: ConfigurationPlan,
        spec: DatasetSpec,
        *,
        num_batches: int = 50,
        seed: int = 0,
        batch_size: int | None = None,
        oversample_foreground_percent: float = 0.33,
        probabilistic_oversampling: bool = False,
        deep_supervision: bool = True,
        num_workers: int = 1,
        prefetch: int = 2,
        pin_memory: bool = False,
        multiprocessing_context: str | None = None,
        resample_each_epoch: bool = False,
    ) -> None:
        _check_workers(num_workers, prefetch)
        if int(num_batches) < 1:
            raise ConfigError(f"num_batches must be >= 1; got {num_batches}.")
        # nnU-Net's validation pipeline: -1 -> 0, regions, deep-supervision targets; no use_mask_for_norm masking
        targets = dataclasses.replace(
            AugmentationConfig.for_plan(plan, spec, deep_supervision=deep_supervision), mask_channels=()
        )
        self.sampler = PatchSampler(plan.patch_size, batch_size=plan.batch_size if batch_size is None else batch_size,
                                    oversample_foreground_percent=oversample_foreground_percent,
                                    probabilistic_oversampling=probabilistic_oversampling,
                                    has_ignore_label=spec.ignore_label is not None)  # fmt: skip
        self.factory = BatchFactory(store, case_ids, self.sampler, targets, seed=seed, augment=False)
        self.num_batches = int(num_batches)
        self.num_workers, self.prefetch, self.pin_memory = int(num_workers), int(prefetch), bool(pin_memory)
        self.multiprocessing_context = multiprocessing_context
        self.resample_each_epoch = parse_bool("ValidationLoader", "resample_each_epoch", resample_each_epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Generator[Batch, None, None]:
        """Yield the batches of epoch 0."""
        return self.batches(0)

    def batches(self, epoch: int) -> Generator[Batch, None, None]:
        """Yield the ``num_batches`` batches of validation ``epoch`` (0-based).

        Raises:
            ConfigError: If ``epoch`` is negative.
        """
        epoch = parse_int("ValidationLoader", "epoch", epoch, minimum=0)
        first = epoch * self.num_batches if self.resample_each_epoch else 0
        return iterate_batches(self.factory, range(first, first + self.num_batches), num_workers=self.num_workers,
                               prefetch=self.prefetch, pin_memory=self.pin_memory,
                               multiprocessing_context=self.multiprocessing_context)  # fmt: skip
