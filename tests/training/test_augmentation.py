"""Augmentation: nnU-Net's settings per configuration, invariants, image/label alignment, targets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case

from nnseg.errors import ConfigError
from nnseg.training import AugmentationConfig, augment_sample, deep_supervision_scales, initial_patch_size, make_targets

OFF = AugmentationConfig(p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                         p_low_resolution=0, p_gamma_inverted=0, p_gamma=0, p_mirror_per_axis=0)  # fmt: skip
ALL = AugmentationConfig(p_rotation=1, p_scaling=1, p_noise=1, p_blur=1, p_brightness=1, p_contrast=1,
                         p_low_resolution=1, p_gamma_inverted=1, p_gamma=1, p_blur_per_channel=1,
                         p_low_resolution_per_channel=1)  # fmt: skip


def threshold(image: torch.Tensor) -> torch.Tensor:
    """The label rule of :func:`threshold_case`."""
    return (image > 0.3).to(torch.int16) + (image > 1.0).to(torch.int16)


@pytest.mark.parametrize(
    ("patch", "angles", "dummy", "expected"),
    [((128, 128, 128), (math.pi / 6,) * 3, False, (205, 205, 205)),
     ((56, 192, 192), (math.pi / 6,) * 3, False, (169, 308, 228)),
     ((448, 448), (math.pi,), False, (527, 527)),
     ((20, 192, 160), (math.pi,) * 3, True, (20, 225, 225))],
)  # fmt: skip
def test_initial_patch_size(
    patch: tuple[int, ...], angles: tuple[float, ...], dummy: bool, expected: tuple[int, ...]
) -> None:
    assert initial_patch_size(patch, angles, dummy_2d=dummy) == expected


@pytest.mark.parity
def test_initial_patch_size_parity() -> None:
    module = pytest.importorskip("nnunetv2.training.data_augmentation.compute_initial_patch_size")
    for patch, angle in (((40, 112, 96), math.pi / 6), ((24, 80, 160), math.radians(50)), ((64, 64), math.pi / 12)):
        rot = (-angle, angle)
        theirs = module.get_patch_size(patch, rot, rot, rot, (0.85, 1.25))
        ours = initial_patch_size(patch, (angle,) * (3 if len(patch) == 3 else 1))
        assert tuple(int(v) for v in theirs) == ours


def test_for_plan_follows_nnunet_rules() -> None:
    spec = make_spec()
    iso = AugmentationConfig.for_plan(make_plan(patch=(64, 64, 64), use_mask=(True,)), spec)
    assert iso.rotation == (math.pi / 6,) * 3
    assert not iso.dummy_2d
    assert iso.mirror_axes == (0, 1, 2)
    assert iso.mask_channels == (0,)
    assert iso.deep_supervision_scales == ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5))
    flat = AugmentationConfig.for_plan(make_plan(patch=(16, 64, 64)), spec)
    assert flat.dummy_2d
    assert flat.initial_patch_size((16, 64, 64))[0] == 16
    assert AugmentationConfig.for_plan(make_plan(patch=(32, 64)), spec).rotation == (math.radians(15),)
    assert AugmentationConfig.for_plan(make_plan(patch=(64, 64)), spec).rotation == (math.pi,)
    assert deep_supervision_scales(make_plan(stages=4))[-1] == (0.25, 0.25, 0.25)


def test_switch_off_with_replace_and_bad_values() -> None:
    config = dataclasses.replace(AugmentationConfig(), p_rotation=0.0, p_scaling=0.0)
    assert config.initial_patch_size((32, 32, 32)) == (32, 32, 32)
    with pytest.raises(ConfigError, match=r"AugmentationConfig.p_blur must be a probability in \[0, 1\]; got 1.5"):
        dataclasses.replace(config, p_blur=1.5)
    with pytest.raises(ConfigError, match="gamma_range must be .low, high. with low <= high"):
        AugmentationConfig(gamma_range=(1.5, 0.7))


@pytest.mark.parametrize("seed", range(4))
def test_invariants_with_every_transform(seed: int) -> None:
    image, seg = threshold_case((30, 30, 30), seed=seed, channels=2)
    seg[:, :3] = -1  # outside the case
    config = dataclasses.replace(ALL, mask_channels=(1,), deep_supervision_scales=((1.0,) * 3, (0.5,) * 3))
    data, labels = augment_sample(image, seg, (16, 16, 16), config, np.random.default_rng(seed))
    assert data.shape == (2, 16, 16, 16)
    assert data.dtype == torch.float32
    assert labels.shape == (1, 16, 16, 16)
    assert labels.dtype == torch.int16
    assert bool(torch.isfinite(data).all())
    assert set(torch.unique(labels).tolist()) <= {-1, 0, 1, 2}
    again, _ = augment_sample(image, seg, (16, 16, 16), config, np.random.default_rng(seed))
    assert torch.equal(data, again)  # a pure function of the generator
    outside = labels[0] < 0
    data, targets = make_targets(data, labels, config)
    assert bool((data[1][outside] == 0).all())
    assert [t.shape for t in targets] == [(1, 16, 16, 16), (1, 8, 8, 8)]
    assert set(torch.unique(targets[0]).tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("seed", range(6))
def test_mirroring_keeps_image_and_label_aligned(seed: int) -> None:
    image, seg = threshold_case((16, 16, 16), seed=seed)
    config = dataclasses.replace(OFF, p_mirror_per_axis=0.5)
    data, labels = augment_sample(image, seg, (16, 16, 16), config, np.random.default_rng(seed))
    assert torch.equal(labels[0], threshold(data[0]))
    assert torch.equal(torch.sort(data.flatten()).values, torch.sort(torch.from_numpy(image).flatten()).values)


@pytest.mark.parametrize("seed", range(4))
def test_rotation_and_scaling_keep_image_and_label_aligned(seed: int) -> None:
    image, seg = threshold_case((40, 40, 40), seed=seed)
    config = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, rotation=(math.pi / 4,) * 3)
    data, labels = augment_sample(image, seg, (24, 24, 24), config, np.random.default_rng(seed))
    assert not torch.equal(data, torch.from_numpy(image[:, 8:32, 8:32, 8:32]))  # something happened
    inside = labels[0] >= 0
    agreement = (labels[0] == threshold(data[0]))[inside].float().mean()
    assert agreement > 0.93  # only voxels at label boundaries may differ after interpolation


def test_dummy_2d_and_two_d_shapes() -> None:
    image, seg = threshold_case((8, 40, 40), seed=1)
    dummy = dataclasses.replace(ALL, dummy_2d=True, rotation=(math.pi,) * 3)
    data, labels = augment_sample(image, seg, (8, 24, 24), dummy, np.random.default_rng(0))
    assert data.shape == (1, 8, 24, 24)
    assert labels.shape == (1, 8, 24, 24)
    flat = dataclasses.replace(ALL, rotation=(math.pi,), mirror_axes=(0, 1))
    data, labels = augment_sample(image[:, 0], seg[:, 0], (24, 24), flat, np.random.default_rng(0))
    assert data.shape == (1, 24, 24)
    assert set(torch.unique(labels).tolist()) <= {-1, 0, 1, 2}


def test_regions_and_ignore_label_targets() -> None:
    spec = make_spec({"background": 0, "whole": (1, 2), "core": 2, "ignore": 3})
    config = AugmentationConfig.for_plan(make_plan(), spec, deep_supervision=False)
    seg = torch.tensor([[[[-1, 0, 1, 2, 3]]]], dtype=torch.int16)
    _, targets = make_targets(torch.zeros(1, 1, 1, 5), seg, config)
    assert len(targets) == 1
    assert targets[0].dtype == torch.bool
    assert targets[0][:, 0, 0].tolist() == [[False, False, True, True, False], [False, False, False, True, False],
                                             [False, False, False, False, True]]  # fmt: skip


def test_input_arrays_are_not_modified() -> None:
    image, seg = threshold_case((16, 16, 16), seed=5)
    before_image, before_seg = image.copy(), seg.copy()
    augment_sample(image, seg, (16, 16, 16), dataclasses.replace(ALL, p_rotation=0, p_scaling=0),
                   np.random.default_rng(0))  # fmt: skip
    assert np.array_equal(image, before_image)
    assert np.array_equal(seg, before_seg)
