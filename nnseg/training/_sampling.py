"""Patch sampling with nnU-Net v2's rules: where a training patch is cut from a preprocessed case.

* A batch draws ``batch_size`` cases uniformly with replacement.
* Sample ``j`` is forced to contain foreground iff ``j >= round(batch_size * (1 - 0.33))`` (the last third);
  the probabilistic variant forces each sample with probability 0.33 instead.
* Training crops the enlarged *initial* patch (room for rotation and scaling); ``need_to_pad = initial - final``
  per axis, raised so that ``shape + need_to_pad >= initial``. The lower corner lies in
  ``[-need//2, shape + need//2 + need%2 - initial]``.
* A forced sample picks a class uniformly among the classes present in the case, one of its stored voxels
  uniformly, and puts the voxel at the patch centre (lower corner clamped from below only). A case without
  foreground falls back to a random corner. With an ignore label, unforced samples centre on an annotated
  voxel (the ``(-1, ...)`` key) instead of a random corner, and that key is never a forced class when a real
  class is present.
* Data outside the image is padded with 0, the segmentation with -1.
* A 2-D patch ``(py, px)`` is cut as ``(1, py, px)`` from the 3-D volume, i.e. from a random slice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nnseg._checks import parse_bool, parse_int, parse_number
from nnseg.errors import ConfigError, StoreError

__all__ = ["PatchReader", "PatchSampler", "SampledPatch", "crop_and_pad", "patch_bounds"]

PatchReader = Callable[[str, Sequence[slice]], tuple[np.ndarray, np.ndarray | None]]
"""``(case_id, slices) -> (data, seg)``: reads one region of a case (``PreprocessedStore.read_patch``)."""


def _ints(values: Sequence[int], name: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of ints, e.g. (64, 128, 128); got {values!r}.") from None
    if len(out) not in (2, 3) or min(out) < 1:
        raise ConfigError(f"{name} must have 2 or 3 positive entries, e.g. (64, 128, 128); got {values!r}.")
    return out


@dataclass(frozen=True, slots=True)
class SampledPatch:
    """One cropped patch in the volume grid.

    Args:
        data: float32 ``(c, *patch)`` image, 0 outside the case.
        seg: int16 ``(1, *patch)`` labels, -1 outside the case.
        lower: The patch's lower corner in the case's ``(z, y, x)`` grid (may be negative).
        forced: Whether the sample was forced to contain foreground.
    """

    data: np.ndarray
    seg: np.ndarray
    lower: tuple[int, ...]
    forced: bool


@dataclass(frozen=True, slots=True)
class PatchSampler:
    """Where to cut the patches of a batch (nnU-Net's ``nnUNetDataLoader`` rules, with an explicit RNG).

    Args:
        patch_size: The network's patch, 2 or 3 entries (``plan.patch_size``).
        initial_patch_size: The larger patch cropped before spatial augmentation (same length; defaults to
            ``patch_size``, as for validation). See :func:`nnseg.training._augment_spatial.initial_patch_size`.
        batch_size: Samples per batch.
        oversample_foreground_percent: Fraction of each batch forced to contain foreground.
        probabilistic_oversampling: Force each sample with that probability instead of the last samples.
        has_ignore_label: The dataset has an ignore label (unforced samples centre on annotated voxels).

    Raises:
        ConfigError: If a size is not positive, a patch axis is 1, or the initial patch is smaller.
    """

    patch_size: tuple[int, ...]
    initial_patch_size: tuple[int, ...] | None = None
    batch_size: int = 2
    oversample_foreground_percent: float = 0.33
    probabilistic_oversampling: bool = False
    has_ignore_label: bool = False

    def __post_init__(self) -> None:
        patch = _ints(self.patch_size, "patch_size")
        initial = patch if self.initial_patch_size is None else _ints(self.initial_patch_size, "initial_patch_size")
        if 1 in patch:
            raise ConfigError(
                f"patch_size {patch} has a singleton axis {patch.index(1)}; every patch axis needs at least 2 "
                "voxels. For slice-wise training use a 2-D configuration (patch (y, x)) instead of a flat 3-D patch."
            )
        if len(initial) != len(patch) or any(i < p for i, p in zip(initial, patch)):
            raise ConfigError(
                f"initial_patch_size {initial} must have one entry per axis of patch_size {patch} and be at least "
                "as large on every axis; compute it with initial_patch_size(...)."
            )
        parse_int("PatchSampler", "batch_size", self.batch_size, minimum=1)
        parse_number("PatchSampler", "oversample_foreground_percent", self.oversample_foreground_percent,
                     low=0.0, high=1.0, default=0.33)  # fmt: skip
        parse_bool("PatchSampler", "probabilistic_oversampling", self.probabilistic_oversampling)
        parse_bool("PatchSampler", "has_ignore_label", self.has_ignore_label)
        object.__setattr__(self, "patch_size", patch)
        object.__setattr__(self, "initial_patch_size", initial)
        object.__setattr__(self, "batch_size", int(self.batch_size))

    @property
    def crop_size(self) -> tuple[int, ...]:
        """The 3-D region cut from a case: the initial patch, with a leading 1 for 2-D patches."""
        initial = tuple(self.initial_patch_size or self.patch_size)
        return (1, *initial) if len(initial) == 2 else initial

    @property
    def need_to_pad(self) -> tuple[int, ...]:
        """``initial - final`` per volume axis (0 on the slice axis of 2-D patches)."""
        initial = tuple(self.initial_patch_size or self.patch_size)
        need = tuple(i - p for i, p in zip(initial, self.patch_size))
        return (0, *need) if len(need) == 2 else need

    def forced_foreground(self, rng: np.random.Generator) -> tuple[bool, ...]:
        """Which samples of one batch must contain foreground."""
        if self.probabilistic_oversampling:
            draws = rng.random(self.batch_size)
            return tuple(bool(d < self.oversample_foreground_percent) for d in draws)
        first = round(self.batch_size * (1 - self.oversample_foreground_percent))
        return tuple(j >= first for j in range(self.batch_size))

    def choose_cases(self, case_ids: Sequence[str], rng: np.random.Generator) -> tuple[str, ...]:
        """Draw ``batch_size`` case ids uniformly with replacement."""
        if not case_ids:
            raise ConfigError("no training cases to sample from; pass at least one case id.")
        picks = rng.integers(0, len(case_ids), size=self.batch_size)
        return tuple(case_ids[int(i)] for i in picks)

    def lower_corner(
        self,
        shape: Sequence[int],
        class_locations: Mapping[str, np.ndarray] | None,
        force_foreground: bool,
        rng: np.random.Generator,
    ) -> tuple[int, ...]:
        """Choose the lower corner of the crop in a case of spatial ``shape`` ``(z, y, x)``.

        Args:
            shape: The case's spatial shape (3 entries).
            class_locations: ``PreprocessedStore.read_class_locations`` of the case (None: no foreground).
            force_foreground: Centre the crop on a voxel of a class present in the case.
            rng: The sample's random generator.
        """
        crop = self.crop_size
        lb, ub = patch_bounds(shape, crop, self.need_to_pad)
        voxel = _centre_voxel(class_locations, force_foreground, self.has_ignore_label, rng)
        if voxel is None:
            return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(lb, ub))
        return tuple(max(lo, int(v) - c // 2) for lo, v, c in zip(lb, voxel, crop))

    def sample(
        self,
        reader: PatchReader,
        case_id: str,
        shape: Sequence[int],
        class_locations: Mapping[str, np.ndarray] | None,
        force_foreground: bool,
        rng: np.random.Generator,
    ) -> SampledPatch:
        """Choose a corner and cut the patch; 2-D patches come back without the slice axis."""
        lower = self.lower_corner(shape, class_locations, force_foreground, rng)
        data, seg = crop_and_pad(reader, case_id, shape, lower, self.crop_size)
        if len(self.patch_size) == 2:
            data, seg = data[:, 0], seg[:, 0]
        return SampledPatch(data=data, seg=seg, lower=lower, forced=force_foreground)


def patch_bounds(
    shape: Sequence[int], patch: Sequence[int], need_to_pad: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return the inclusive range ``(lb, ub)`` of a random crop's lower corner, per axis.

    ``need_to_pad`` is raised where the case is smaller than the patch so that every crop fits after padding.
    """
    need = [max(int(n), int(p) - int(s)) for s, p, n in zip(shape, patch, need_to_pad)]
    lb = tuple(-n // 2 for n in need)
    ub = tuple(int(s) + n // 2 + n % 2 - int(p) for s, p, n in zip(shape, patch, need))
    return lb, ub


def _is_annotated_key(key: str) -> bool:
    return key.replace(" ", "").startswith("(-1,")


def _centre_voxel(
    class_locations: Mapping[str, np.ndarray] | None,
    force_foreground: bool,
    has_ignore_label: bool,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """The ``(z, y, x)`` voxel a crop is centred on, or None for a random crop."""
    if not class_locations or not (force_foreground or has_ignore_label):
        return None
    present = [key for key, voxels in class_locations.items() if len(voxels)]
    annotated = [key for key in present if _is_annotated_key(key)]
    classes = [key for key in present if not _is_annotated_key(key)]
    if force_foreground:
        candidates = classes or annotated
    else:
        candidates = annotated
    if not candidates:
        return None
    key = candidates[int(rng.integers(len(candidates)))]
    voxels = class_locations[key]
    return np.asarray(voxels[int(rng.integers(len(voxels)))])[-3:]


def crop_and_pad(
    reader: PatchReader, case_id: str, shape: Sequence[int], lower: Sequence[int], patch: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``[lower, lower + patch)`` from a case, padding data with 0 and the segmentation with -1.

    Only the part inside the case is read. Returns float32 data ``(c, *patch)`` and int16 seg ``(1, *patch)``.

    Raises:
        StoreError: If the case has no segmentation or the reader returns an unexpected shape.
    """
    lo = [min(max(int(low), 0), int(s)) for low, s in zip(lower, shape)]
    hi = [max(min(int(low) + int(p), int(s)), start) for low, p, s, start in zip(lower, patch, shape, lo)]
    data, seg = reader(case_id, tuple(slice(a, b) for a, b in zip(lo, hi)))
    if seg is None:
        raise StoreError(
            f"case {case_id!r} has no segmentation in the store; training needs labelled cases. Remove it from "
            "the training split or add its label file and preprocess again."
        )
    expected = tuple(b - a for a, b in zip(lo, hi))
    if tuple(data.shape[1:]) != expected or tuple(seg.shape[1:]) != expected:
        raise StoreError(
            f"case {case_id!r}: reading region {list(zip(lo, hi))} gave data {data.shape} and seg {seg.shape}; "
            f"expected spatial shape {expected}. Its recorded shape {tuple(shape)} does not match its arrays; "
            "preprocess the case again."
        )
    if tuple(lo) == tuple(int(v) for v in lower) and expected == tuple(int(p) for p in patch):
        return data.astype(np.float32, copy=False), seg.astype(np.int16, copy=False)
    # Write the region into a pre-filled patch: one pass instead of np.pad's per-axis passes and extra copy.
    inside = (slice(None),) + tuple(slice(a - int(low), b - int(low)) for a, b, low in zip(lo, hi, lower))
    padded_data = np.zeros((data.shape[0], *(int(p) for p in patch)), dtype=np.float32)
    padded_seg = np.full((seg.shape[0], *(int(p) for p in patch)), -1, dtype=np.int16)
    padded_data[inside] = data
    padded_seg[inside] = seg
    return padded_data, padded_seg
