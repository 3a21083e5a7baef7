"""Augmentation: nnU-Net's settings per configuration, invariants, image/label alignment, targets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case

from nnseg.errors import ConfigError
from nnseg.training import AugmentationConfig, augment_sample, deep_supervision_scales, make_targets
from nnseg.training._augment_spatial import initial_patch_size

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
    with pytest.raises(
        ConfigError, match=r"AugmentationConfig: p_blur must be a number in \[0, 1\]; got 1.5\. Leave it at its default"
    ):
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


PROBABILITIES = [
    f.name for f in dataclasses.fields(AugmentationConfig) if f.name.startswith("p_") and "_per_channel" not in f.name
]


def test_every_transform_is_off_by_default_in_off_and_on_by_its_own_switch() -> None:
    image, seg = threshold_case((20, 20, 20), seed=3, channels=2)
    centre = torch.from_numpy(image[:, 2:18, 2:18, 2:18])
    data, labels = augment_sample(image, seg, (16, 16, 16), OFF, np.random.default_rng(0))
    assert torch.equal(data, centre)  # everything off: a plain centred crop
    assert torch.equal(labels, torch.from_numpy(seg[:, 2:18, 2:18, 2:18].astype(np.int16)))
    assert set(PROBABILITIES) == {"p_rotation", "p_scaling", "p_noise", "p_blur", "p_brightness", "p_contrast",
                                  "p_low_resolution", "p_gamma_inverted", "p_gamma", "p_mirror_per_axis"}  # fmt: skip
    for name in PROBABILITIES:  # each switch alone, through dataclasses.replace, changes the sample
        config = dataclasses.replace(OFF, p_blur_per_channel=1.0, p_low_resolution_per_channel=1.0, **{name: 1.0})
        changed, _ = augment_sample(image, seg, (16, 16, 16), config, np.random.default_rng(0))
        assert changed.shape == centre.shape
        assert not torch.equal(changed, centre), name


def test_more_bad_config_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"rotation must hold 1 \(2-D\) or 3 \(3-D\).*got \(0.5, 0.5\)"):
        AugmentationConfig(rotation=(0.5, 0.5))
    with pytest.raises(ConfigError, match=r"mirror_axes=\(0, 3\)"):
        AugmentationConfig(mirror_axes=(0, 3))
    with pytest.raises(ConfigError, match=r"mask_channels=\(-1,\)"):
        AugmentationConfig(mask_channels=(-1,))
    one_angle = AugmentationConfig(rotation=(math.pi / 6,))  # one angle serves every axis in 3-D
    assert one_angle.initial_patch_size((128, 128, 128)) == (205, 205, 205)


@pytest.mark.parametrize("seed", range(3))
def test_two_d_and_dummy_2d_rotation_keep_image_and_label_aligned(seed: int) -> None:
    image, seg = threshold_case((6, 48, 48), seed=seed)
    flat = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, rotation=(math.pi,), mirror_axes=(0, 1))
    dummy = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, rotation=(math.pi,) * 3, dummy_2d=True)
    for source, labels_in, patch, config in ((image[:, 3], seg[:, 3], (32, 32), flat),
                                             (image, seg, (6, 32, 32), dummy)):  # fmt: skip
        data, labels = augment_sample(source, labels_in, patch, config, np.random.default_rng(seed))
        inside = labels[0] >= 0
        assert (labels[0] == threshold(data[0]))[inside].float().mean() > 0.93
        shifted = torch.roll(labels[0], 1, dims=-1)  # a one-voxel misalignment would be caught
        assert (shifted == threshold(data[0]))[inside].float().mean() < 0.9


def test_dummy_2d_never_mixes_slices() -> None:
    volume = np.broadcast_to(np.arange(1, 7, dtype=np.float32)[:, None, None], (6, 40, 40))[None].copy()
    seg = np.broadcast_to(np.arange(6, dtype=np.int16)[:, None, None], (6, 40, 40))[None].copy()
    config = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, rotation=(math.pi,) * 3, dummy_2d=True)
    for seed in range(3):
        data, labels = augment_sample(volume, seg, (6, 24, 24), config, np.random.default_rng(seed))
        for z in range(6):
            assert float(data[0, z].max()) == pytest.approx(z + 1)  # in-plane only: slice z keeps its value
            assert set(torch.unique(labels[0, z]).tolist()) <= {-1, z}


@pytest.mark.parity
@pytest.mark.parametrize(
    ("shape", "patch", "angles", "scale"),
    [((41, 44, 40), (24, 24, 24), (0.3, -0.2, 0.5), 1.2), ((30, 30, 30), (24, 24, 24), (0.5, 0.4, -0.6), 1.4),
     ((40, 40, 40), (24, 24, 24), (0.0, 0.0, 0.0), 0.8), ((50, 46), (32, 32), (0.7,), 0.9)],
)  # fmt: skip
def test_spatial_transform_parity(
    shape: tuple[int, ...], patch: tuple[int, ...], angles: tuple[float, ...], scale: float
) -> None:
    """Same grid and label resampling as batchgeneratorsv2's SpatialTransform, nnU-Net's settings."""
    spatial = pytest.importorskip("batchgeneratorsv2.transforms.spatial.spatial")
    from nnseg.training._augment_spatial import spatial_transform

    image, seg = threshold_case(shape, seed=1)
    seg = seg.astype(np.int16)
    seg[:, :2] = -1
    draws = iter(angles if len(angles) == 3 else (0.0, *angles))  # theirs draws one angle per axis, 2-D uses the last
    theirs = spatial.SpatialTransform(patch, 0, False, p_rotation=1, rotation=lambda **_: next(draws), p_scaling=1,
                                      scaling=(scale, scale), p_synchronize_scaling_across_axes=1,
                                      border_mode_seg="constant", padding_value_seg=-1)  # fmt: skip
    expected = theirs(image=torch.from_numpy(image), segmentation=torch.from_numpy(seg))
    data, labels = spatial_transform(torch.from_numpy(image), torch.from_numpy(seg), patch, [-a for a in angles], scale)
    assert torch.allclose(data, expected["image"], atol=1e-4)
    # labels: the same interpolate-indicators-then-argmax rule; only (near-)ties may differ (theirs compares
    # float16 scores and breaks ties by the nearest neighbour, ours compares float32 scores in label order)
    assert (labels != expected["segmentation"]).float().mean() < 0.01
    assert set(torch.unique(labels).tolist()) == set(torch.unique(expected["segmentation"]).tolist())


@pytest.mark.parity
def test_intensity_transforms_parity() -> None:
    """Each intensity transform, at a fixed parameter, equals batchgeneratorsv2's at nnU-Net's settings."""
    pytest.importorskip("batchgeneratorsv2")
    from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
    from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
    from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
    from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
    from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform

    from nnseg.training import _augment_intensity as ours

    image, _ = threshold_case((20, 24, 28), seed=2, channels=2)
    cases = [
        (MultiplicativeBrightnessTransform((1.2, 1.2), False, 1), lambda x, r: ours.brightness(x, r, (1.2, 1.2))),
        (ContrastTransform((0.8, 0.8), True, False, 1), lambda x, r: ours.contrast(x, r, (0.8, 0.8))),
        (GammaTransform((1.3, 1.3), 0, False, 1, 1), lambda x, r: ours.gamma(x, r, (1.3, 1.3))),
        (GammaTransform((0.8, 0.8), 1, False, 1, 1), lambda x, r: ours.gamma(x, r, (0.8, 0.8), invert=True)),
        (GaussianBlurTransform((0.7, 0.7), False, False, 1), lambda x, r: ours.blur(x, r, (0.7, 0.7), 1.0)),
        (SimulateLowResolutionTransform((0.6, 0.6), False, True, None, None, 1),
         lambda x, r: ours.simulate_low_resolution(x, r, (0.6, 0.6), 1.0)),
        (SimulateLowResolutionTransform((0.6, 0.6), False, True, (0,), None, 1),
         lambda x, r: ours.simulate_low_resolution(x, r, (0.6, 0.6), 1.0, (0,))),
    ]  # fmt: skip
    for theirs, mine in cases:
        expected = theirs(image=torch.from_numpy(image.copy()))["image"]
        assert torch.allclose(mine(torch.from_numpy(image.copy()), np.random.default_rng(0)), expected, atol=1e-5)


@pytest.mark.parity
def test_validation_targets_parity() -> None:
    """make_targets without masking equals nnU-Net's validation transforms (-1 -> 0, regions, DS targets)."""
    trainer = pytest.importorskip("nnunetv2.training.nnUNetTrainer.nnUNetTrainer").nnUNetTrainer
    scales = ((1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    seg = torch.from_numpy(np.random.default_rng(0).integers(-1, 4, size=(1, 12, 10, 14)).astype(np.int16))
    for regions, ignore in ((None, None), (((1, 2), (2,)), 3)):
        config = AugmentationConfig(regions=regions, ignore_label=ignore, deep_supervision_scales=scales)
        _, targets = make_targets(torch.zeros(1, 12, 10, 14), seg, config)
        pipeline = trainer.get_validation_transforms([list(s) for s in scales], regions=regions, ignore_label=ignore)
        expected = pipeline(image=torch.zeros(1, 12, 10, 14), segmentation=seg.clone())["segmentation"]
        assert [tuple(t.shape) for t in targets] == [tuple(e.shape) for e in expected]
        assert all(torch.equal(t.to(e.dtype), e) for t, e in zip(targets, expected))
