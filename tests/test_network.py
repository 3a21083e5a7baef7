"""build_network: nnU-Net's U-Nets from an ArchitecturePlan, an allow-list of classes, nnU-Net's weight init."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from nnseg.errors import ConfigError, PlansError
from nnseg.network import build_network, known_building_blocks, known_network_classes
from nnseg.planning import ArchitecturePlan
from nnseg.planning._fields import building_blocks

UNET = "dynamic_network_architectures.architectures.unet"
REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")
PLANS_FIXTURE = Path(__file__).parent / "planning" / "data" / "nnUNetPlans.json"


def _kwargs(ndim: int, features: list[int], strides: list[list[int]], residual: bool) -> dict[str, Any]:
    n = len(features)
    kwargs: dict[str, Any] = {
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
        "kernel_sizes": [[3] * ndim] * n,
        "strides": strides,
        **building_blocks(ndim),
    }
    if residual:
        kwargs.update(n_blocks_per_stage=[1, 3, 4, 6][:n], n_conv_per_stage_decoder=[1] * (n - 1))
    else:
        kwargs.update(n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
    return kwargs


def plain_3d() -> ArchitecturePlan:
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]
    return ArchitecturePlan(f"{UNET}.PlainConvUNet", _kwargs(3, [4, 8, 16], strides, False), REQUIRES_IMPORT)


def resenc_2d() -> ArchitecturePlan:
    strides = [[1, 1], [2, 2], [2, 2], [2, 2]]
    return ArchitecturePlan(f"{UNET}.ResidualEncoderUNet", _kwargs(2, [4, 8, 16, 32], strides, True), REQUIRES_IMPORT)


def _with(arch: ArchitecturePlan, **changes: Any) -> ArchitecturePlan:
    return ArchitecturePlan(arch.network_class_name, {**arch.plain_arch_kwargs(), **changes}, arch.kw_requires_import)


def test_deep_supervision_outputs_are_highest_resolution_first() -> None:
    net = build_network(plain_3d(), num_input_channels=2, num_outputs=3)
    outputs = net(torch.zeros(2, 2, 8, 16, 16))
    assert isinstance(outputs, list | tuple)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 8, 16, 16), (2, 3, 8, 8, 8)]


def test_without_deep_supervision_gives_one_tensor_2d_residual() -> None:
    net = build_network(resenc_2d(), num_input_channels=1, num_outputs=4, deep_supervision=False)
    out = net(torch.zeros(1, 1, 32, 32))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (1, 4, 32, 32)


def test_same_seed_gives_same_weights_and_another_seed_does_not() -> None:
    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return build_network(resenc_2d(), num_input_channels=1, num_outputs=3).state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_init_is_kaiming_normal_with_zero_biases() -> None:
    arch = _with(plain_3d(), features_per_stage=[64, 128, 128])
    torch.manual_seed(0)
    net = build_network(arch, num_input_channels=1, num_outputs=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d | torch.nn.ConvTranspose3d)]
    assert convs
    assert all(m.bias is not None and torch.count_nonzero(m.bias) == 0 for m in convs)
    encoder: Any = net.encoder
    conv = encoder.stages[1][0].convs[1].conv  # 128 -> 128, 3x3x3
    fan_in = conv.weight.shape[1] * 27
    expected = math.sqrt(2.0 / (1 + 0.01**2) / fan_in)
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=expected * 0.02)


def test_residual_blocks_start_with_their_last_norm_at_zero() -> None:
    from dynamic_network_architectures.building_blocks.residual import BasicBlockD

    net = build_network(resenc_2d(), num_input_channels=1, num_outputs=3)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlockD)]
    assert len(blocks) == 1 + 3 + 4 + 6
    for block in blocks:
        assert torch.count_nonzero(block.conv2.norm.weight) == 0
        assert torch.count_nonzero(block.conv2.norm.bias) == 0
        assert torch.count_nonzero(block.conv1.norm.weight) > 0


def test_initialize_false_keeps_torch_defaults() -> None:
    net = build_network(resenc_2d(), num_input_channels=1, num_outputs=3, initialize=False)
    modules: list[Any] = list(net.modules())
    norms = [m.conv2.norm.weight for m in modules if hasattr(m, "conv2") and hasattr(m.conv2, "norm")]
    assert norms
    assert all(torch.all(w == 1) for w in norms)


@pytest.mark.parametrize(
    "conv_op", ["torch.nn.Conv3d", "torch.nn.modules.conv.Conv3d", "Conv3d"], ids=["public", "module", "bare"]
)
def test_building_blocks_accept_every_spelling(conv_op: str) -> None:
    net = build_network(_with(plain_3d(), conv_op=conv_op), num_input_channels=1, num_outputs=2)
    encoder: Any = net.encoder
    assert isinstance(encoder.stages[0][0].convs[0].conv, torch.nn.Conv3d)


def test_bare_network_class_name_is_accepted() -> None:
    arch = ArchitecturePlan("PlainConvUNet", plain_3d().arch_kwargs, REQUIRES_IMPORT)
    assert type(build_network(arch, num_input_channels=1, num_outputs=2)).__name__ == "PlainConvUNet"


def test_allow_lists_hold_the_nnunet_defaults() -> None:
    blocks = known_building_blocks()
    for name in ("torch.nn.modules.conv.Conv2d", "torch.nn.modules.instancenorm.InstanceNorm3d", "torch.nn.LeakyReLU",
                 "torch.nn.modules.dropout.Dropout3d", "torch.nn.modules.activation.LeakyReLU"):  # fmt: skip
        assert name in blocks
    assert set(known_network_classes()) == {
        f"{UNET}.{n}" for n in ("PlainConvUNet", "ResidualEncoderUNet", "ResidualUNet")
    }


def test_unknown_building_block_suggests_the_close_name() -> None:
    arch = _with(plain_3d(), conv_op="torch.nn.modules.conv.Conv3D")
    with pytest.raises(
        PlansError, match=r"arch_kwargs\['conv_op'\]: unknown class .*Did you mean 'torch.nn.modules.conv.Conv3d'"
    ):
        build_network(arch, num_input_channels=1, num_outputs=2)


def test_arbitrary_dotted_names_are_never_imported() -> None:
    arch = _with(plain_3d(), nonlin="os.system")
    with pytest.raises(PlansError, match="unknown class 'os.system'; nnseg only builds known classes"):
        build_network(arch, num_input_channels=1, num_outputs=2)


def test_unknown_network_class_suggests_the_close_name() -> None:
    arch = ArchitecturePlan(f"{UNET}.PlainConvUnet", plain_3d().arch_kwargs, REQUIRES_IMPORT)
    with pytest.raises(PlansError, match=r"network_class_name: unknown class .*Did you mean '.*unet.PlainConvUNet'"):
        build_network(arch, num_input_channels=1, num_outputs=2)


def test_requires_import_of_a_missing_key_is_an_error() -> None:
    arch = ArchitecturePlan(plain_3d().network_class_name, plain_3d().arch_kwargs, (*REQUIRES_IMPORT, "block"))
    with pytest.raises(PlansError, match="'_kw_requires_import' lists 'block' but arch_kwargs has no such key"):
        build_network(arch, num_input_channels=1, num_outputs=2)


def test_non_string_block_is_an_error() -> None:
    with pytest.raises(PlansError, match=r"arch_kwargs\['norm_op'\] must be a dotted class name or null; got 3"):
        build_network(_with(plain_3d(), norm_op=3), num_input_channels=1, num_outputs=2)


def test_kwargs_that_do_not_fit_the_class_are_a_plans_error() -> None:
    with pytest.raises(PlansError, match="cannot build .*PlainConvUNet.*n_stages entries"):
        build_network(_with(plain_3d(), n_conv_per_stage=[2, 2]), num_input_channels=1, num_outputs=2)
    with pytest.raises(PlansError, match="cannot build"):
        build_network(_with(plain_3d(), n_blocks_per_stage=[1, 1, 1]), num_input_channels=1, num_outputs=2)


@pytest.mark.parametrize(("channels", "outputs"), [(0, 2), (1, 0), (True, 2)])
def test_channel_counts_must_be_positive_ints(channels: Any, outputs: Any) -> None:
    with pytest.raises(ConfigError, match=r"build_network: num_(input_channels|outputs) must be an integer >= 1; got"):
        build_network(plain_3d(), num_input_channels=channels, num_outputs=outputs)


def test_importing_the_module_does_not_import_torch() -> None:
    probe = "import sys, nnseg.network, nnseg.planning; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parity
@pytest.mark.parametrize("arch_name", ["plans_3d_fullres", "plans_2d", "resenc_2d"])
def test_matches_nnunet_construction_and_init(arch_name: str) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    if arch_name == "resenc_2d":
        arch = resenc_2d()
    else:
        raw = json.loads(PLANS_FIXTURE.read_text())["configurations"][arch_name.removeprefix("plans_")]["architecture"]
        arch = ArchitecturePlan(raw["network_class_name"], raw["arch_kwargs"], tuple(raw["_kw_requires_import"]))
    torch.manual_seed(123)
    ours = build_network(arch, num_input_channels=2, num_outputs=3)
    torch.manual_seed(123)
    theirs = get_network_from_plans(
        arch.network_class_name, arch.plain_arch_kwargs(), list(arch.kw_requires_import), 2, 3, deep_supervision=True
    )
    assert type(ours) is type(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in ours_state)
