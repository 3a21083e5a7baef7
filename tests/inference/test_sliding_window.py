"""Sliding-window logits: shapes, mirroring, padding, and equality with nnU-Net's predictor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnseg.errors import ConfigError
from nnseg.inference import mirror_axis_combinations, predict_logits


def _net(dims: int, channels: int = 2, outputs: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
    return torch.nn.Sequential(conv(channels, 4, 3, padding=1), torch.nn.LeakyReLU(), conv(4, outputs, 3, padding=1)).eval()


def test_mirror_combinations() -> None:
    assert mirror_axis_combinations((0, 1, 2)) == [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
    assert len(mirror_axis_combinations((0, 1))) == 3


@pytest.mark.parametrize(("shape", "patch"), [((2, 10, 20, 17), (8, 16, 16)), ((2, 5, 9, 30), (8, 16, 16)),
                                              ((2, 1, 30, 21), (16, 16)), ((2, 4, 30, 21), (16, 16))])  # fmt: skip
def test_output_shape_and_dtype(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    logits = predict_logits(_net(len(patch)), data, patch, 3, mirror_axes=tuple(range(len(patch))))
    assert logits.shape == (3, *shape[1:])
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_a_pointwise_network_is_reproduced_exactly_in_float32() -> None:
    """A 1x1 convolution has no context, so blending tiles must give the plain full-image output."""
    torch.manual_seed(1)
    net = torch.nn.Conv3d(2, 3, 1).eval()
    data = torch.randn(2, 9, 20, 23)
    logits = predict_logits(net, data, (8, 8, 8), 3, mirror_axes=(0, 1, 2), accumulation_dtype=torch.float32)
    with torch.no_grad():
        expected = net(data[None])[0]
    assert torch.allclose(logits, expected, atol=1e-5)


def test_wrong_dimensions_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"expected data \(c, z, y, x\) and a 2- or 3-D patch; got data \(10, 10\)"):
        predict_logits(_net(3), np.zeros((10, 10), np.float32), (8, 8, 8), 3)


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
    ours = predict_logits(net, data, patch, 3, mirror_axes=axes)
    assert torch.equal(ours, expected.float())
