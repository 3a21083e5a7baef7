"""Sliding-window logits: shapes, mirroring, padding, and equality with nnU-Net's predictor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnseg.errors import ConfigError, NnsegError
from nnseg.inference import InferenceSettings, predict_logits
from nnseg.inference._sliding_window import mirror_axis_combinations

PLAIN = InferenceSettings(use_mirroring=False)
MIRROR = InferenceSettings()  # every axis of the patch
NNUNET = InferenceSettings().with_nnunet_numerics()


def _net(dims: int, channels: int = 2, outputs: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(channels, 4, 3, padding=1), torch.nn.LeakyReLU(), conv(4, outputs, 3, padding=1)
    ).eval()


def test_mirror_combinations() -> None:
    assert mirror_axis_combinations((0, 1, 2)) == [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    assert len(mirror_axis_combinations((0, 1))) == 3


@pytest.mark.parametrize(("shape", "patch"), [((2, 10, 20, 17), (8, 16, 16)), ((2, 5, 9, 30), (8, 16, 16)),
                                              ((2, 1, 30, 21), (16, 16)), ((2, 4, 30, 21), (16, 16))])  # fmt: skip
def test_output_shape_and_dtype(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    logits = predict_logits(_net(len(patch)), data, patch, 3, MIRROR)
    assert logits.shape == (3, *shape[1:])
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_a_pointwise_network_is_reproduced_exactly_in_float32() -> None:
    """A 1x1 convolution has no context, so blending tiles must give the plain full-image output."""
    torch.manual_seed(1)
    net = torch.nn.Conv3d(2, 3, 1).eval()
    data = torch.randn(2, 9, 20, 23)
    logits = predict_logits(net, data, (8, 8, 8), 3, MIRROR)
    with torch.no_grad():
        expected = net(data[None])[0]
    assert torch.allclose(logits, expected, atol=1e-5)


def test_wrong_dimensions_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"expected data \(c, z, y, x\) and a 2- or 3-D patch; got data \(10, 10\)"):
        predict_logits(_net(3), np.zeros((10, 10), np.float32), (8, 8, 8), 3, PLAIN)


@pytest.mark.parity
@pytest.mark.parametrize(("shape", "patch", "axes"), [((2, 9, 12, 10), (8, 8, 8), (0, 1, 2)),
                                                      ((2, 6, 9, 30), (8, 16, 16), (1, 2)),
                                                      ((2, 3, 30, 21), (16, 16), (0, 1))])  # fmt: skip
def test_logits_equal_nnunets(shape: tuple[int, ...], patch: tuple[int, ...], axes: tuple[int, ...]) -> None:
    module = pytest.importorskip("nnunetv2.inference.predict_from_raw_data")
    net = _net(len(patch))
    data = torch.from_numpy(np.random.default_rng(2).normal(size=shape).astype(np.float32))
    predictor = module.nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                       perform_everything_on_device=False, device=torch.device("cpu"),
                                       verbose=False, allow_tqdm=False)  # fmt: skip
    predictor.network = net
    predictor.configuration_manager = SimpleNamespace(patch_size=list(patch))
    predictor.label_manager = SimpleNamespace(num_segmentation_heads=3)
    predictor.allowed_mirroring_axes = axes
    expected = predictor.predict_sliding_window_return_logits(data.clone())
    ours = predict_logits(net, data, patch, 3, InferenceSettings(mirror_axes=axes).with_nnunet_numerics())
    assert torch.equal(ours, expected.float())


class _Constant(torch.nn.Module):
    def __init__(self, values: tuple[float, ...]) -> None:
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], len(self.values), *x.shape[2:])
        return self.values.view(1, -1, *([1] * (x.ndim - 2))).expand(shape).clone()


def test_a_constant_network_gives_an_exactly_constant_output() -> None:
    values = (0.5, -4.0, 8.0)  # powers of two: scaling by them commutes with rounding, so blending is exact
    logits = predict_logits(_Constant(values), torch.randn(1, 7, 19, 30), (4, 8, 8), 3,
                            InferenceSettings(tile_batch_size=3))  # fmt: skip
    for channel, value in enumerate(values):
        assert torch.equal(logits[channel], torch.full((7, 19, 30), value))
    # nnU-Net's float16 accumulators are not even close where the Gaussian weights are subnormal
    half = predict_logits(_Constant(values), torch.zeros(1, 7, 19, 30), (4, 8, 8), 3, NNUNET)
    assert (half[0] - 0.5).abs().max() > 0.05


def test_batched_tiles_and_mirrored_copies_match_one_input_per_pass() -> None:
    net, data = _net(3), torch.randn(2, 11, 14, 13)
    one = predict_logits(net, data, (8, 8, 8), 3, InferenceSettings(tile_batch_size=1))
    many = predict_logits(net, data, (8, 8, 8), 3, InferenceSettings(tile_batch_size=5))
    assert torch.allclose(one, many, atol=1e-5)


def test_float16_accumulation_overflow_is_reported_and_float32_is_fine() -> None:
    big = _Constant((3e4, 1.0))
    data = torch.zeros(1, 8, 12, 12)
    with pytest.raises(NnsegError, match=r"not finite \(Float16GaussianAccumulator sums in torch.float16: a float16 "
                       r"overflow.*accumulator='gaussian'"):  # fmt: skip
        predict_logits(big, data, (8, 8, 8), 2, NNUNET)
    assert torch.allclose(predict_logits(big, data, (8, 8, 8), 2, PLAIN)[0], torch.full((8, 12, 12), 3e4), rtol=1e-6)


class _SmallMemory(torch.nn.Module):
    """Raises an out-of-memory error for batches above ``limit`` tiles."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.batches = limit, []  # type: list[int]
        self.conv = torch.nn.Conv3d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


def test_out_of_memory_halves_the_batch_size() -> None:
    net = _SmallMemory(limit=2).eval()
    data = torch.randn(1, 8, 16, 24)
    logits = predict_logits(net, data, (8, 8, 8), 2, InferenceSettings(use_mirroring=False, tile_batch_size=8))
    assert net.batches[:2] == [8, 4]
    assert max(net.batches[2:]) <= 2
    assert torch.allclose(logits, predict_logits(net, data, (8, 8, 8), 2, PLAIN), atol=1e-6)


def test_the_optimized_network_computes_the_same_logits() -> None:
    from nnseg.inference._optimize import optimize_for_inference

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.InstanceNorm3d(4, affine=True),
                              torch.nn.LeakyReLU(), torch.nn.Conv3d(4, 2, 1)).eval()  # fmt: skip
    with torch.no_grad():
        net[1].weight.uniform_(0.5, 2)
        net[1].bias.uniform_(-1, 1)
    data = torch.randn(1, 10, 20, 17)
    expected = predict_logits(net, data, (8, 8, 8), 2, MIRROR)
    fast = optimize_for_inference(net, 3, torch.device("cpu"))
    assert isinstance(net[1], torch.nn.GroupNorm)
    fast_logits = predict_logits(fast, data, (8, 8, 8), 2, InferenceSettings(tile_batch_size=8))
    assert torch.allclose(fast_logits, expected, atol=1e-4)
