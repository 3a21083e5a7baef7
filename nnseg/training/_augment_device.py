"""Device-side augmentation: workers only crop, the training device rotates, scales, changes intensities and mirrors.

The CPU pipeline spends most of its time in the spatial transform (one trilinear resampling of the image and
one per label). With ``augmentation_device`` the loader's workers stop after the crop
(:class:`CropFactory`) and hand over each sample's generator state with the crop; :class:`DeviceAugmenter`
then draws the transform parameters from that very generator, in the CPU pipeline's order, so the
parameters of step ``s`` are exactly those the CPU pipeline would draw for step ``s``. Only the arithmetic
differs: the image and the one-hot labels go through ONE ``grid_sample`` per patch on the device (the CPU
pipeline resamples each label separately), and the noise comes from a generator on the device. The result is
a pure function of ``(seed, step)`` on a given device, and follows the same distributions as the CPU pipeline
(tests compare them), but it is not bit-identical to it.

On CUDA the worker batches should be pinned (``pin_memory=True``) so the host-to-device copy is asynchronous;
the few host synchronisations left (``torch.unique`` of the labels of a transformed patch, the gamma
transform's finite-std check) are per sample, not per voxel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import get_worker_info

from nnseg.errors import ConfigError, LoaderError
from nnseg.training._augment_spatial import _centre_crop, _touched_box, affine_theta, rotation_matrix
from nnseg.training._augmentation import AugmentationConfig, _draw_spatial, _intensity, make_targets
from nnseg.training._batches import Batch, BatchFactory, _one_thread, stack_tensors

__all__ = ["CropFactory", "CroppedBatch", "DeviceAugmenter", "parse_device", "spatial_transform_one_pass"]


def parse_device(value: object, owner: str = "TrainingLoader") -> torch.device:
    """Return ``value`` as a ``torch.device``.

    Raises:
        ConfigError: If ``value`` is not a device name or ``torch.device``.
    """
    try:
        return torch.device(value)  # type: ignore[call-overload, no-any-return]
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"{owner}.augmentation_device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got {value!r}."
        ) from None


@dataclass(frozen=True, slots=True)
class CroppedBatch:
    """The crops of one step before augmentation, with each sample's generator state after the crop.

    Args:
        data: float32 ``(B, C, *initial_patch)``.
        seg: int16 ``(B, 1, *initial_patch)``, -1 outside the case.
        rng_states: ``bit_generator.state`` of each sample's generator, right after its crop was drawn.
        case_ids: The case of each sample.
        step: The global step.
    """

    data: torch.Tensor
    seg: torch.Tensor
    rng_states: tuple[dict[str, Any], ...]
    case_ids: tuple[str, ...]
    step: int

    def pin_memory(self) -> CroppedBatch:
        """Return a copy in page-locked memory (the loader's pinning thread calls it on CUDA machines)."""
        return CroppedBatch(self.data.pin_memory(), self.seg.pin_memory(), self.rng_states, self.case_ids, self.step)


class CropFactory:
    """The workers' half of the device path: ``factory(step)``'s crops, not augmented.

    Args:
        factory: The CPU batch factory whose sampling (cases, forced foreground, corners) is reused exactly.
    """

    def __init__(self, factory: BatchFactory) -> None:
        self.factory = factory

    def __call__(self, step: int) -> CroppedBatch:
        """Return the crops of global step ``step`` (built in shared memory inside a loader worker).

        Raises:
            LoaderError: If a sample fails; the message names the step, the sample and the case.
        """
        factory = self.factory
        batch_rng, sample_rngs = factory.rngs(step)
        forced = factory.sampler.forced_foreground(batch_rng)
        cases = factory.sampler.choose_cases(factory.case_ids, batch_rng)
        datas, segs, states = [], [], []
        for j, (case_id, force, rng) in enumerate(zip(cases, forced, sample_rngs)):
            try:
                patch = factory.crop(case_id, force, rng)
            except Exception as err:
                raise LoaderError(f"step {step}, sample {j}: case {case_id!r} failed in the data pipeline: "
                                  f"{type(err).__name__}: {err}") from err  # fmt: skip
            datas.append(torch.from_numpy(np.ascontiguousarray(patch.data, np.float32)))
            segs.append(torch.from_numpy(np.ascontiguousarray(patch.seg, np.int16)))
            states.append(dict(rng.bit_generator.state))
        shared = get_worker_info() is not None
        try:
            return CroppedBatch(stack_tensors(datas, shared), stack_tensors(segs, shared), tuple(states), cases,
                                int(step))  # fmt: skip
        except RuntimeError as err:
            raise LoaderError(f"step {step}: the crops of {cases} do not stack into one batch (different channel "
                              "counts?); every case of a store must have the same channels.") from err  # fmt: skip


def _generator(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, str(state["bit_generator"]))()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def spatial_transform_one_pass(
    data: torch.Tensor,
    seg: torch.Tensor,
    out_shape: Sequence[int],
    angles: Sequence[float] | None,
    scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and scale ``(c, *spatial)`` data and ``(k, *spatial)`` labels with one ``grid_sample`` call.

    The same map as :func:`~nnseg.training.spatial_transform` (centre, crop, zero padding, the -1 label filling
    what falls outside the input, ties going to background, then to the lower label); the labels are
    resampled as one-hot channels stacked onto the image, on whatever device the tensors live.
    """
    if angles is None and scale is None:
        return _centre_crop(data, out_shape), _centre_crop(seg, out_shape)
    ndim, in_shape = len(out_shape), tuple(data.shape[1:])
    matrix = np.eye(ndim) if angles is None else rotation_matrix(angles)
    if scale is not None:
        matrix = matrix * float(scale)
    box = _touched_box(in_shape, out_shape, matrix)
    data, seg = data[(slice(None),) + box], seg[(slice(None),) + box]
    centre = np.array([(full - 1) / 2 - b.start for full, b in zip(in_shape, box)])
    theta = affine_theta(data.shape[1:], out_shape, matrix, centre).to(data.device)
    grid = F.affine_grid(theta, [1, 1, *(int(o) for o in out_shape)], align_corners=False)
    present = torch.unique(seg)
    labels = torch.cat([present.new_zeros(1), present[present > 0]])  # background first: it wins ties
    has_outside = bool((present < 0).any())
    values = torch.cat([labels, present.new_full((1,), -1)]) if has_outside else labels
    onehot = (seg.unsqueeze(0) == values.view(-1, *([1] * seg.ndim))).to(data.dtype)  # (L, k, *box)
    stacked = torch.cat([data, onehot.reshape(-1, *onehot.shape[2:])]).unsqueeze(0)
    out = F.grid_sample(stacked, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    image, scores = out[: data.shape[0]], out[data.shape[0] :].reshape(len(values), seg.shape[0], *out_shape)
    outside = 1.0 - scores.sum(0) + (scores[-1] if has_outside else 0.0)
    best, index = scores[: len(labels)].max(0)
    result = labels[index].to(seg.dtype)
    return image, torch.where(outside > best, torch.tensor(-1, dtype=seg.dtype, device=seg.device), result)


def _augment_one(
    data: torch.Tensor, seg: torch.Tensor, patch: Sequence[int], config: AugmentationConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU pipeline's steps and draws (``augment_sample``) with the one-pass spatial transform."""
    dummy = config.dummy_2d and len(patch) == 3
    channels, slices = data.shape[0], data.shape[1]
    if dummy:  # fold the slice axis into the channels and work in 2-D
        data, seg = data.reshape(-1, *data.shape[2:]), seg.reshape(-1, *seg.shape[2:])
    out = tuple(patch[1:]) if dummy else tuple(patch)
    angles, scale = _draw_spatial(config, len(out), rng)
    x, s = spatial_transform_one_pass(data, seg, out, angles, scale)
    if dummy:
        x, s = x.reshape(channels, slices, *out), s.reshape(1, slices, *out)
    x = _intensity(x.clone(), config, rng)  # the crop is a view of the batch: never modify it
    flips = [axis + 1 for axis in config.mirror_axes if axis < len(patch) and rng.random() < config.p_mirror_per_axis]
    if flips:
        x, s = torch.flip(x, flips), torch.flip(s, flips)
    return x.contiguous(), s.contiguous()


class DeviceAugmenter:
    """Augment :class:`CroppedBatch` es on a torch device and build the targets there: ``augmenter(crops) -> Batch``.

    Args:
        config: The transforms (the CPU pipeline's :class:`AugmentationConfig`).
        patch_size: The final patch.
        device: Where to augment (any torch device; the returned batch lives there).

    Raises:
        ConfigError: If ``device`` is not a torch device.
    """

    def __init__(self, config: AugmentationConfig, patch_size: Sequence[int], device: str | torch.device) -> None:
        self.config = config
        self.patch_size = tuple(int(p) for p in patch_size)
        self.device = parse_device(device)

    def __call__(self, crops: CroppedBatch) -> Batch:
        """Return the augmented batch of ``crops`` on the device (a pure function of the crops and their states)."""
        # one intra-op thread on the CPU: float reductions, and with them the batches, do not depend on the
        # caller's thread count
        with _one_thread() if self.device.type == "cpu" else contextlib.nullcontext():
            return self._augment(crops)

    def _augment(self, crops: CroppedBatch) -> Batch:
        data = crops.data.to(self.device, non_blocking=True)
        seg = crops.seg.to(self.device, non_blocking=True)
        datas, targets = [], []
        for j, state in enumerate(crops.rng_states):
            try:
                x, s = _augment_one(data[j], seg[j], self.patch_size, self.config, _generator(state))
            except Exception as err:
                raise LoaderError(f"step {crops.step}, sample {j}: case {crops.case_ids[j]!r} failed in the device "
                                  f"augmentation on {self.device}: {type(err).__name__}: {err}") from err  # fmt: skip
            x, target = make_targets(x, s, self.config)
            datas.append(x)
            targets.append(target)
        stacked = tuple(torch.stack([t[k] for t in targets]) for k in range(len(targets[0])))
        return Batch(torch.stack(datas), stacked, crops.case_ids, crops.step)
