"""Fingerprint extraction: :func:`fingerprint_case` (pure, one case) and :func:`extract_fingerprint` (a dataset).

What is computed (nnU-Net v2's rules, facts §3): each case is cropped to its nonzero region; its spacing
(array order, untransposed), its shape after cropping and the ratio of voxels after / before cropping are
recorded; per channel, ``num_samples`` foreground (label > 0) intensities are drawn with replacement using a
fresh ``np.random.RandomState(seed)`` per case. The samples of all cases are pooled per channel for the
intensity statistics. ``num_samples`` defaults to ``int(1e8 // num_cases)``, nnU-Net's value, so the
results equal nnU-Net's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from nnseg._checks import parse_int
from nnseg._cropping import crop_to_nonzero
from nnseg.errors import ConfigError, FingerprintError, NnsegError
from nnseg.fingerprint._cache import CacheKey, FingerprintCache, FingerprintCacheStatus, file_stamp
from nnseg.fingerprint._fingerprint import CaseFingerprint, Fingerprint
from nnseg.fingerprint._pooling import SampleBuffer, pool_fingerprint
from nnseg.fingerprint._runner import run_cases
from nnseg.io import read_images, read_segmentation
from nnseg.sharding import Shard

if TYPE_CHECKING:
    from nnseg.dataset import Case, RawDataset

__all__ = ["DEFAULT_SEED", "default_num_samples", "extract_fingerprint", "fingerprint_cache_status", "fingerprint_case"]

logger = logging.getLogger(__name__)

DEFAULT_SEED = 1234
"""Seed of the per-case random state (nnU-Net's)."""
TOTAL_FOREGROUND_SAMPLES = 10e7
"""Foreground samples per channel over the whole dataset (nnU-Net's ``num_foreground_voxels_for_intensitystats``)."""
_DRAW_CHUNK = 1 << 18  # small index arrays: reused heap memory instead of fresh pages per call


def default_num_samples(num_cases: int) -> int:
    """Return nnU-Net's samples per case and channel, ``int(1e8 // num_cases)``."""
    return int(TOTAL_FOREGROUND_SAMPLES // num_cases)


def _check_case_arrays(images: np.ndarray, seg: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    if images.ndim < 2 or images.size == 0:
        raise FingerprintError(
            f"fingerprint_case: images have zero size or no spatial axis (shape {images.shape}); expected a "
            "channel-first (c, z, y, x) array with at least one voxel."
        )
    if seg.ndim == images.ndim - 1:
        seg = seg[None]
    if seg.shape != (1, *images.shape[1:]):
        raise FingerprintError(
            f"fingerprint_case: label map shape {seg.shape} does not match the image shape {images.shape}; "
            f"expected {(1, *images.shape[1:])}. Image and label files of a case must have the same size."
        )
    if len(spacing) != images.ndim - 1:
        raise FingerprintError(
            f"fingerprint_case: spacing {list(spacing)} has {len(spacing)} values; expected one per spatial "
            f"axis ({images.ndim - 1})."
        )
    return seg


def _draw_samples(
    cropped: np.ndarray, foreground: np.ndarray, num_samples: int, seed: int, out: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Draw ``num_samples`` foreground values per channel with replacement, like ``RandomState.choice``.

    With ``out`` (one float32 array of ``num_samples`` per channel) the samples are written there and a
    ``(c, 0)`` array is returned.
    """
    num_foreground = int(np.count_nonzero(foreground))
    if num_foreground == 0:
        return np.empty((cropped.shape[0], 0), dtype=np.float32)
    random_state = np.random.RandomState(seed)
    samples = np.empty((cropped.shape[0], 0 if out is not None else num_samples), dtype=np.float32)
    rows = out if out is not None else list(samples)
    for channel in range(cropped.shape[0]):
        values = cropped[channel][foreground].astype(np.float32, copy=False)
        # choice(values, n, replace=True) is values[randint(0, len(values), n)]; drawing the indices in
        # chunks consumes the same random stream while bounding the index array's memory. The indices are
        # in range, so mode="clip" changes nothing but skips the copy take() makes with out= otherwise.
        for start in range(0, num_samples, _DRAW_CHUNK):
            stop = min(start + _DRAW_CHUNK, num_samples)
            indices = random_state.randint(0, num_foreground, size=stop - start)
            np.take(values, indices, out=rows[channel][start:stop], mode="clip")
    return samples


def fingerprint_case(
    images: np.ndarray,
    seg: np.ndarray,
    spacing: Sequence[float],
    *,
    num_samples: int,
    seed: int = DEFAULT_SEED,
) -> CaseFingerprint:
    """Fingerprint one case given as arrays (pure: no I/O, inputs unchanged).

    Args:
        images: Channel-first image ``(c, z, y, x)`` (2-D cases as ``(c, 1, y, x)``).
        seg: Label map ``(1, z, y, x)`` (or ``(z, y, x)``); every value > 0 counts as foreground.
        spacing: Spacing in array axis order, one value per spatial axis.
        num_samples: Foreground intensities to draw per channel (see :func:`default_num_samples`).
        seed: Seed of the case's ``np.random.RandomState``.

    Returns:
        The :class:`CaseFingerprint`; its samples are float32 and empty when the case has no foreground.

    Raises:
        FingerprintError: If the image has zero size or the label map does not match it.
        ConfigError: If ``num_samples`` is not a positive int.
    """
    num_samples = parse_int("fingerprint_case", "num_samples", num_samples, minimum=1)
    return _case_result(np.asarray(images), np.asarray(seg), spacing, num_samples, seed)


def _case_result(
    images: np.ndarray,
    seg: np.ndarray,
    spacing: Sequence[float],
    num_samples: int,
    seed: int,
    out: Sequence[np.ndarray] | None = None,
) -> CaseFingerprint:
    seg = _check_case_arrays(images, seg, spacing)
    cropped, cropped_seg, _ = crop_to_nonzero(images, seg)
    foreground = cropped_seg[0] > 0
    return CaseFingerprint(
        spacing=tuple(float(s) for s in spacing),
        shape_before_crop=tuple(int(s) for s in images.shape[1:]),
        shape_after_crop=tuple(int(s) for s in cropped.shape[1:]),
        samples=_draw_samples(cropped, foreground, num_samples, seed, out),
        num_foreground_voxels=int(np.count_nonzero(foreground)),
    )


@dataclass(frozen=True, slots=True)
class _CaseTask:
    """Everything a worker needs to fingerprint one case (picklable)."""

    case: Case
    num_channels: int
    num_samples: int
    seed: int
    cache_root: Path | None = None
    cache_key: CacheKey | None = None


def _fingerprint_files(task: _CaseTask, out: Sequence[np.ndarray] | None) -> CaseFingerprint:
    case = task.case
    files = ", ".join(str(p) for p in case.image_paths)
    try:
        images, geometry = read_images(case.image_paths)
        seg, _ = read_segmentation(case.label_path) if case.label_path is not None else (None, None)
    except NnsegError as err:
        raise FingerprintError(f"case {case.case_id!r}: {err}") from err
    if seg is None:
        raise FingerprintError(f"case {case.case_id!r} has no label file; fingerprinting needs training cases.")
    if images.size == 0:
        raise FingerprintError(
            f"case {case.case_id!r}: image file(s) {files} have zero size (shape {images.shape[1:]}); expected "
            "at least one voxel. Re-export the image or remove the case from the dataset."
        )
    if images.shape[0] != task.num_channels or seg.shape[1:] != images.shape[1:]:
        raise FingerprintError(
            f"case {case.case_id!r}: image file(s) {files} give shape {images.shape} and label file "
            f"{case.label_path} gives {seg.shape}; expected {task.num_channels} channel(s) and one label map of "
            "the same spatial size. Run RawDataset.verify() to list every broken case."
        )
    return _case_result(images, seg, geometry.spacing, task.num_samples, task.seed, out)


def _compute_task(task: _CaseTask, out: Sequence[np.ndarray] | None = None) -> CaseFingerprint | None:
    """Worker entry: fingerprint one case; with a cache, store it there and return None.

    With ``out`` (no cache) the samples are drawn into it and the result holds none.
    """
    stamp = file_stamp(task.case) if task.cache_root is not None else None
    try:
        result = _fingerprint_files(task, out)
    except NnsegError:
        raise
    except Exception as err:  # report which case broke, whatever broke
        raise FingerprintError(f"case {task.case.case_id!r} failed: {type(err).__name__}: {err}") from err
    if task.cache_root is None or task.cache_key is None or stamp is None:
        return result
    FingerprintCache(task.cache_root, task.cache_key).write(task.case.case_id, stamp, result)
    return None


def _settings(dataset: RawDataset, num_samples: int | None, num_workers: int) -> tuple[tuple[Case, ...], int]:
    cases = tuple(dataset.cases)
    if not cases:
        raise FingerprintError("the dataset has no training cases; expected at least one case with a label map.")
    parse_int("extract_fingerprint", "num_workers", num_workers, minimum=1)
    if num_samples is None:
        return cases, default_num_samples(len(cases))
    return cases, parse_int("extract_fingerprint", "num_samples", num_samples, minimum=1)


def _in_memory(
    dataset: RawDataset, cases: tuple[Case, ...], tasks: list[_CaseTask], num_workers: int, progress: bool
) -> Fingerprint:
    buffer = SampleBuffer(dataset.spec.num_channels, len(cases), tasks[0].num_samples)
    results: list[CaseFingerprint | None] = [None] * len(cases)
    names = [case.case_id for case in cases]

    def local(index: int) -> CaseFingerprint | None:  # this process draws straight into the pooled buffer
        result = _compute_task(tasks[index], out=buffer.slot(index))
        if result is not None and result.has_foreground:
            buffer.mark(index)
        return result

    for index, result in run_cases(_compute_task, tasks, names, num_workers=num_workers, progress=progress,
                                   local=local):  # fmt: skip
        if result is None:  # invariant: no cache, so workers return results
            raise FingerprintError(f"case {names[index]!r}: worker returned no result")
        buffer.put(index, result.samples)
        results[index] = dataclasses.replace(result, samples=result.samples[:, :0])
    done = [r for r in results if r is not None]
    return pool_fingerprint(names, done, dataset.spec.channel_names, buffer.channel, buffer.release)


def _from_cache(cache: FingerprintCache, case_ids: Sequence[str], channel_names: Sequence[str]) -> Fingerprint:
    results = [cache.read(case_id, with_samples=False) for case_id in case_ids]
    with_foreground = [case_id for case_id, r in zip(case_ids, results) if r.has_foreground]

    def channel_samples(channel: int) -> np.ndarray:
        count = cache.key.num_samples
        pooled = np.empty(count * len(with_foreground), dtype=np.float32)
        for position, case_id in enumerate(with_foreground):  # one memory map open at a time
            pooled[position * count : (position + 1) * count] = cache.read(case_id).samples[channel]
        return pooled

    return pool_fingerprint(case_ids, results, channel_names, channel_samples)


@overload
def extract_fingerprint(
    dataset: RawDataset,
    *,
    num_workers: int = ...,
    cache_dir: str | os.PathLike[str] | None = ...,
    shard: None = ...,
    progress: bool = ...,
    num_samples: int | None = ...,
    seed: int = ...,
) -> Fingerprint: ...
@overload
def extract_fingerprint(
    dataset: RawDataset,
    *,
    num_workers: int = ...,
    cache_dir: str | os.PathLike[str] | None = ...,
    shard: Shard,
    progress: bool = ...,
    num_samples: int | None = ...,
    seed: int = ...,
) -> None: ...
def extract_fingerprint(
    dataset: RawDataset,
    *,
    num_workers: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    shard: Shard | None = None,
    progress: bool = False,
    num_samples: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Fingerprint | None:
    """Compute a dataset's fingerprint (nnU-Net's statistics), optionally resumable and sharded.

    The result does not depend on ``num_workers`` or on how the work was split or interrupted.

    Args:
        dataset: The raw dataset (its training cases are used, in case-id order).
        num_workers: Workers; 1 computes in this process. With more, this process is one of them and up to
            ``num_workers - 1`` helper processes take at most two cases each at a time (started only when
            the remaining work outlasts their start-up).
        cache_dir: Folder for per-case results. Each finished case is stored atomically, so a killed run
            continues where it stopped. A cache made with other settings (``num_samples``, ``seed``, dataset
            content or case list) is refused with a :class:`FingerprintError`, never mixed.
        shard: Compute only the cases this part owns (:meth:`Shard.select`) into ``cache_dir`` and return
            None. A later call without ``shard`` computes whatever is still missing and assembles the result.
        progress: Show a tqdm progress bar.
        num_samples: Foreground samples per case and channel; None means nnU-Net's
            ``int(1e8 // num_cases)``. Smaller values are faster but no longer match nnU-Net.
        seed: Seed of each case's random state.

    Returns:
        The :class:`Fingerprint`, or None when ``shard`` is given.

    Raises:
        FingerprintError: If no case has foreground, a case cannot be read or is malformed (naming the case
            and file), a worker dies, or the cache belongs to other settings.
        ConfigError: If ``shard`` is given without ``cache_dir`` or an argument is out of range.

    Example:
        >>> fp = extract_fingerprint(ds, num_workers=8, cache_dir="work/fingerprint_cache", progress=True)
        >>> fp.save("work/fingerprint.json")
    """
    (cases, count), num_channels = _settings(dataset, num_samples, num_workers), dataset.spec.num_channels
    if cache_dir is None:
        if shard is not None:
            raise ConfigError(
                f"extract_fingerprint: shard={shard} needs a cache_dir to store its cases in; pass cache_dir=... "
                "(the same folder for every part and for the final call that assembles the fingerprint)."
            )
        tasks = [_CaseTask(case, num_channels, count, seed) for case in cases]
        return _in_memory(dataset, cases, tasks, num_workers, progress)
    key = CacheKey.for_dataset(dataset.spec, [c.case_id for c in cases], num_samples=count, seed=seed)
    cache = FingerprintCache(cache_dir, key)
    cache.open(create=True)
    owned = set(shard.select(c.case_id for c in cases)) if shard is not None else None
    todo = [c for c in cases if (owned is None or c.case_id in owned) and not cache.has(c)]
    _compute_into_cache(cache, [_CaseTask(case, num_channels, count, seed, cache.root, key) for case in todo],
                        cached=len(cases) - len(todo), num_workers=num_workers, progress=progress)  # fmt: skip
    if shard is not None:
        return None
    return _from_cache(cache, [c.case_id for c in cases], dataset.spec.channel_names)


def _compute_into_cache(
    cache: FingerprintCache, tasks: list[_CaseTask], *, cached: int, num_workers: int, progress: bool
) -> None:
    """Compute ``tasks`` (each stores its case in ``cache`` atomically), this process working too."""
    logger.info("fingerprint: %d case(s) to compute, %d cached in %s", len(tasks), cached, cache.root)
    names = [task.case.case_id for task in tasks]
    for _ in run_cases(_compute_task, tasks, names, num_workers=num_workers, progress=progress,
                       local=lambda index: _compute_task(tasks[index])):  # fmt: skip
        pass


def fingerprint_cache_status(
    dataset: RawDataset,
    cache_dir: str | os.PathLike[str],
    *,
    num_samples: int | None = None,
    seed: int = DEFAULT_SEED,
) -> FingerprintCacheStatus:
    """Report which training cases a fingerprint cache already holds (reads no image).

    Args:
        dataset: The raw dataset.
        cache_dir: The cache folder given to :func:`extract_fingerprint` (it may not exist yet).
        num_samples: As given to :func:`extract_fingerprint`.
        seed: As given to :func:`extract_fingerprint`.

    Raises:
        FingerprintError: If the cache was made with other settings.
    """
    cases, count = _settings(dataset, num_samples, 1)
    key = CacheKey.for_dataset(dataset.spec, [c.case_id for c in cases], num_samples=count, seed=seed)
    cache = FingerprintCache(cache_dir, key)
    if not cache.open(create=False):
        return FingerprintCacheStatus((), tuple(sorted(c.case_id for c in cases)))
    return cache.status(cases)
