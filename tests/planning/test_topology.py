"""Initial patch, pooling topology, the shrink step and the feature-map estimate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.planning._topology import (
    feature_map_size,
    features_per_stage,
    initial_patch_size,
    pad_to_multiple,
    pooling_topology,
    repeat_last,
    shrink_patch,
)


# ------------------------------------------------------------------------------------------ initial patch
def test_initial_patch_has_the_start_volume_and_the_physical_aspect_ratio() -> None:
    assert initial_patch_size((1.0, 1.0, 1.0), (300, 300, 300)) == (256.0, 256.0, 256.0)
    patch = initial_patch_size((2.5, 0.8, 0.8), (500, 500, 500))
    assert patch == (120.0, 374.0, 374.0)  # 0.4 : 1.25 : 1.25, about 256**3 voxels
    assert math.prod(patch) == pytest.approx(256**3, rel=0.01)
    assert initial_patch_size((1.0, 1.0), (4000, 4000)) == (2048.0, 2048.0)


def test_initial_patch_is_clipped_to_the_median_shape() -> None:
    assert initial_patch_size((1.0, 1.0, 1.0), (40, 300, 100.5)) == (40.0, 256.0, 100.5)
    assert initial_patch_size((0.5, 0.5), (512, 96)) == (512.0, 96.0)


# ------------------------------------------------------------------------------------------ pooling
def test_worked_example_topology() -> None:
    """nnU-Net's 3d_fullres for CT at (2.5, 0.8, 0.8) with a (56, 192, 192) patch (facts §4.5)."""
    topology = pooling_topology((2.5, 0.8, 0.8), (56, 192, 192))
    assert topology.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert topology.kernel_sizes == ((1, 3, 3),) + ((3, 3, 3),) * 5
    assert topology.num_stages == 6
    assert topology.divisor == (8, 32, 32)
    assert topology.patch_size == (56, 192, 192)


def test_short_axes_stop_pooling_and_the_patch_is_padded_up() -> None:
    topology = pooling_topology((1.0, 1.0, 1.0), (50, 100, 13))
    assert topology.strides == ((1, 1, 1), (2, 2, 2), (2, 2, 1), (2, 2, 1), (1, 2, 1))
    assert topology.divisor == (8, 16, 2)
    assert topology.patch_size == (56, 112, 14)


def test_a_lone_axis_needs_three_times_the_minimum_edge() -> None:
    assert pooling_topology((1.0, 1.0), (11, 4)).num_stages == 1  # 11 < 12: no pooling at all
    assert pooling_topology((1.0, 1.0), (12, 4)).strides == ((1, 1), (2, 1))


def test_min_edge_controls_depth() -> None:
    assert pooling_topology((1.0, 1.0, 1.0), (128, 128, 128), min_edge=4).num_stages == 6
    assert pooling_topology((1.0, 1.0, 1.0), (128, 128, 128), min_edge=8).num_stages == 5


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.3, 6.0), min_size=3, max_size=3),
    st.lists(st.integers(1, 400), min_size=3, max_size=3),
)
def test_topology_invariants(spacing: list[float], patch: list[int]) -> None:
    topology = pooling_topology(spacing, patch)
    assert len(topology.kernel_sizes) == topology.num_stages
    assert topology.strides[0] == (1, 1, 1)
    assert topology.kernel_sizes[-1] == (3, 3, 3)
    for axis in range(3):
        assert topology.divisor[axis] == 2 ** sum(s[axis] == 2 for s in topology.strides)
        assert topology.patch_size[axis] % topology.divisor[axis] == 0
        assert patch[axis] <= topology.patch_size[axis] < patch[axis] + topology.divisor[axis]
    for earlier, later in zip(topology.kernel_sizes, topology.kernel_sizes[1:]):
        assert all(b >= a for a, b in zip(earlier, later))  # once 3, an axis stays 3


def test_pad_to_multiple() -> None:
    assert pad_to_multiple((56, 100.5, 13), (8, 4, 1)) == (56, 104, 13)


# ------------------------------------------------------------------------------------------ shrink
def test_shrink_subtracts_the_divisor_the_smaller_patch_needs() -> None:
    """256 -> 224, not 192: a 192 patch would need one pooling fewer, so 224 is still allowed."""
    topology = pooling_topology((1.0, 1.0, 1.0), (256, 256, 256))
    assert topology.divisor == (64, 64, 64)
    axis, patch, smaller = shrink_patch((1.0, 1.0, 1.0), topology, (300, 300, 300))
    assert axis == 2  # ties go to the last axis
    assert patch == (256, 256, 224)
    assert smaller.patch_size == (256, 256, 224)


def test_shrink_picks_the_axis_with_the_largest_patch_to_median_ratio() -> None:
    topology = pooling_topology((1.0, 1.0, 1.0), (128, 128, 128))
    axis, patch, _ = shrink_patch((1.0, 1.0, 1.0), topology, (400, 130, 200))
    assert axis == 1
    assert patch[0] == 128
    assert patch[2] == 128
    assert patch[1] < 128


# ------------------------------------------------------------------------------------------ features
def test_features_double_up_to_the_cap() -> None:
    assert features_per_stage(7, 32, 320) == (32, 64, 128, 256, 320, 320, 320)
    assert features_per_stage(3, 16, 512) == (16, 32, 64)


def test_repeat_last() -> None:
    assert repeat_last((1, 3, 4, 6), 7) == (1, 3, 4, 6, 6, 6, 6)
    assert repeat_last((2,), 3) == (2, 2, 2)
    assert repeat_last((1, 3, 4, 6), 2) == (1, 3)


def test_reference_feature_map_sizes() -> None:
    """The computed reference points of facts §4.5 (PlainConvUNet, 3 classes, no deep supervision)."""
    strides_3d = ((1, 1, 1),) + ((2, 2, 2),) * 5
    assert (
        feature_map_size((128,) * 3, strides_3d, features_per_stage(6, 32, 320), (2,) * 6, (2,) * 5, 3) == 452_796_416
    )
    strides_2d = ((1, 1),) + ((2, 2),) * 6
    assert feature_map_size((512,) * 2, strides_2d, features_per_stage(7, 32, 512), (2,) * 7, (2,) * 6, 3) == 82_771_968


def _dna_feature_map_size(
    residual: bool, patch: Sequence[int], strides: Sequence[Sequence[int]], features: Sequence[int],
    encoder: Sequence[int], decoder: Sequence[int], num_classes: int,
) -> int:  # fmt: skip
    torch = pytest.importorskip("torch")
    unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    ndim = len(patch)
    cls = unet.ResidualEncoderUNet if residual else unet.PlainConvUNet
    with torch.device("meta"):
        network = cls(
            2, len(features), list(features), torch.nn.Conv3d if ndim == 3 else torch.nn.Conv2d,
            [[3] * ndim] * len(features), [list(s) for s in strides], list(encoder), num_classes, list(decoder),
            True, torch.nn.InstanceNorm3d if ndim == 3 else torch.nn.InstanceNorm2d, {"eps": 1e-5, "affine": True},
            None, None, torch.nn.LeakyReLU, {"inplace": True}, deep_supervision=False,
        )  # fmt: skip
    return int(network.compute_conv_feature_map_size(list(patch)))


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize(
    ("spacing", "patch", "num_classes"),
    [
        ((1.0, 1.0, 1.0), (64, 64, 64), 3),
        ((2.5, 0.8, 0.8), (40, 160, 128), 2),
        ((1.0, 1.0, 1.0), (24, 96, 13), 5),
        ((1.0, 1.0), (256, 192), 4),
        ((0.5, 0.5), (48, 80), 2),
    ],
)
def test_feature_map_size_equals_dynamic_network_architectures(
    residual: bool, spacing: tuple[float, ...], patch: tuple[int, ...], num_classes: int
) -> None:
    topology = pooling_topology(spacing, patch)
    stages = topology.num_stages
    features = features_per_stage(stages, 32, 320 if len(patch) == 3 else 512)
    encoder = repeat_last((1, 3, 4, 6) if residual else (2,), stages)
    decoder = repeat_last((1,) if residual else (2,), stages - 1)
    ours = feature_map_size(topology.patch_size, topology.strides, features, encoder, decoder, num_classes,
                            residual=residual)  # fmt: skip
    assert ours == _dna_feature_map_size(residual, topology.patch_size, topology.strides, features, encoder, decoder,
                                         num_classes)  # fmt: skip
