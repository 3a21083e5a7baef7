"""The cascade's training input: the previous stage's one-hot foreground on the image, and nnU-Net's two
cascade-only augmentations of it.

A cascade sample is cut with the previous-stage label map as a second channel of the label slot, so rotation,
scaling and mirroring move it exactly as the label (nearest-label resampling, -1 outside the case). After the
image augmentation it leaves the label slot as one channel per foreground label (-1 and 0 get none) appended
to the image, and, in training only:

* with probability ``p_binary_operator`` (0.4): each one-hot channel, in a random order and with probability
  ``p_per_label`` (0.5), gets a random binary dilation, erosion, closing or opening with a ball of radius drawn
  from ``strel_size`` (1-8); voxels a channel gains are taken from the other channels;
* with probability ``p_remove_component`` (0.2): each channel, in a random order and with probability
  ``p_per_label`` (0.5), loses one randomly chosen connected component smaller than ``max_component_fraction``
  (15 %) of the patch.

Every draw comes from the sample's numpy generator, so a batch stays a pure function of ``(seed, step)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from nnseg._checks import parse_number
from nnseg.training._augmentation import augment_sample, make_targets
from nnseg.training._batches import BatchFactory

__all__ = ["CascadeAugmentation", "CascadeBatchFactory", "ball", "random_binary_operator", "remove_random_component"]

PreviousReader = Callable[[str, tuple[slice, ...]], np.ndarray]
"""``(case_id, spatial slices) -> (1, *region)`` previous-stage labels of a case."""


def ball(radius: float, ndim: int) -> np.ndarray:
    """Boolean structuring element: the voxels whose offset from the centre is at most ``radius``."""
    reach = int(np.floor(radius))
    grid = np.indices((2 * reach + 1,) * ndim) - reach
    return (grid**2).sum(axis=0) <= radius * radius


def _dilate(mask: np.ndarray, strel: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(mask, structure=strel)


def _erode(mask: np.ndarray, strel: np.ndarray) -> np.ndarray:
    # outside the patch counts as foreground (nnU-Net erodes as the complement of a zero-padded dilation)
    return ndimage.binary_erosion(mask, structure=strel, border_value=1)


def _close(mask: np.ndarray, strel: np.ndarray) -> np.ndarray:
    return _erode(_dilate(mask, strel), strel)


def _open(mask: np.ndarray, strel: np.ndarray) -> np.ndarray:
    return _dilate(_erode(mask, strel), strel)


OPERATORS = (_dilate, _erode, _close, _open)


def random_binary_operator(
    onehot: torch.Tensor, rng: np.random.Generator, *, p_per_label: float = 0.5,
    strel_size: tuple[float, float] = (1.0, 8.0),
) -> torch.Tensor:  # fmt: skip
    """Apply a random morphological operator to some one-hot channels (in place; returns ``onehot``).

    Args:
        onehot: ``(L, *spatial)`` 0/1 channels.
        rng: The sample's generator.
        p_per_label: Probability that a channel is changed.
        strel_size: Range of the ball radius.
    """
    order = rng.permutation(onehot.shape[0])
    chosen = [int(c) for c in order if rng.random() < p_per_label]
    for channel in chosen:
        operator = OPERATORS[int(rng.integers(len(OPERATORS)))]
        radius = float(rng.uniform(*strel_size))
        before = onehot[channel].numpy() > 0
        after = operator(before, ball(radius, before.ndim))
        gained = torch.from_numpy(after & ~before)
        for other in range(onehot.shape[0]):
            if other != channel:
                onehot[other][gained] = 0
        onehot[channel] = torch.from_numpy(after).to(onehot.dtype)
    return onehot


def remove_random_component(
    onehot: torch.Tensor, rng: np.random.Generator, *, p_per_label: float = 0.5, max_fraction: float = 0.15
) -> torch.Tensor:
    """Remove one random connected component smaller than ``max_fraction`` of the patch from some channels.

    Args:
        onehot: ``(L, *spatial)`` 0/1 channels (changed in place; returned).
        rng: The sample's generator.
        p_per_label: Probability that a channel loses a component.
        max_fraction: Components covering this fraction of the patch or more are never removed.
    """
    order = rng.permutation(onehot.shape[0])
    chosen = [int(c) for c in order if rng.random() < p_per_label]
    for channel in chosen:
        mask = onehot[channel].numpy() > 0
        if not mask.any():
            continue
        labelled, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
        sizes = np.bincount(labelled.ravel())[1:]
        small = [i + 1 for i, size in enumerate(sizes) if size < mask.size * max_fraction]
        if small:
            onehot[channel][torch.from_numpy(labelled == small[int(rng.integers(len(small)))])] = 0
    return onehot


@dataclass(frozen=True, slots=True)
class CascadeAugmentation:
    """The cascade-only augmentation of the one-hot previous-stage channels (nnU-Net's settings by default).

    Args:
        labels: The foreground labels, one channel each (``spec.foreground_labels``).
        p_binary_operator: Probability of the binary morphology step per sample.
        p_remove_component: Probability of the component removal step per sample.
        p_per_label: Probability per channel within each step.
        strel_size: Range of the ball radius of the morphology.
        max_component_fraction: Only components smaller than this fraction of the patch are removed.

    Raises:
        ConfigError: If a probability or fraction is outside [0, 1] or ``strel_size`` is not ``(low, high)``
            with ``0 < low <= high``.
    """

    labels: tuple[int, ...]
    p_binary_operator: float = 0.4
    p_remove_component: float = 0.2
    p_per_label: float = 0.5
    strel_size: tuple[float, float] = (1.0, 8.0)
    max_component_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in ("p_binary_operator", "p_remove_component", "p_per_label", "max_component_fraction"):
            parse_number("CascadeAugmentation", name, getattr(self, name), low=0.0, high=1.0)
        low, high = self.strel_size
        parse_number("CascadeAugmentation", "strel_size[0]", low, low=1e-6)
        parse_number("CascadeAugmentation", "strel_size[1]", high, low=float(low))

    def one_hot(self, previous: torch.Tensor) -> torch.Tensor:
        """``(L, *spatial)`` float32: channel ``k`` is 1 where ``previous == labels[k]``."""
        return torch.stack([(previous == label) for label in self.labels]).to(torch.float32)

    def __call__(self, onehot: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Both random steps, each with its probability (in place; returns ``onehot``)."""
        if rng.random() < self.p_binary_operator:
            onehot = random_binary_operator(onehot, rng, p_per_label=self.p_per_label, strel_size=self.strel_size)
        if rng.random() < self.p_remove_component:
            onehot = remove_random_component(onehot, rng, p_per_label=self.p_per_label,
                                             max_fraction=self.max_component_fraction)  # fmt: skip
        return onehot


class CascadeBatchFactory(BatchFactory):
    """A :class:`~nnseg.training._batches.BatchFactory` whose samples carry the one-hot previous stage after the image.

    Args:
        base: The factory of the plain configuration (store, cases, sampler, augmentation, seed, augment).
        read_previous: Reads a region of a case's previous-stage labels.
        cascade: The one-hot layout and its augmentation (applied when ``base.augment``).
    """

    def __init__(self, base: BatchFactory, read_previous: PreviousReader, cascade: CascadeAugmentation) -> None:
        super().__init__(base.store, base.case_ids, base.sampler, base.augmentation, seed=base.seed,
                         augment=base.augment)  # fmt: skip
        self.read_previous, self.cascade = read_previous, cascade

    def _read_patch(self, case_id: str, slices: Sequence[slice]) -> tuple[np.ndarray, np.ndarray | None]:
        data, seg = self.store.read_patch(case_id, slices)
        if seg is None:
            return data, None
        previous = self.read_previous(case_id, tuple(slices)).astype(np.int16)
        return data, np.concatenate([np.asarray(seg, np.int16), previous])

    def sample(
        self, case_id: str, force: bool, rng: np.random.Generator
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Cut (label and previous stage together), augment, append the one-hot; returns data and targets."""
        patch = self.sampler.sample(self._read_patch, case_id, self._shape(case_id),
                                    self.store.read_class_locations(case_id), force, rng)  # fmt: skip
        if self.augment:
            data, seg = augment_sample(patch.data, patch.seg, self.sampler.patch_size, self.augmentation, rng)
        else:
            data, seg = torch.from_numpy(patch.data.copy()), torch.from_numpy(patch.seg.copy())
        onehot = self.cascade.one_hot(seg[1])
        if self.augment:
            onehot = self.cascade(onehot, rng)
        return make_targets(torch.cat([data, onehot]), seg[:1].contiguous(), self.augmentation)
