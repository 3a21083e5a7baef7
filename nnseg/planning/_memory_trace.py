"""The traced training step behind :mod:`nnseg.planning._memory` (torch is imported lazily here too).

- :func:`forward_and_loss`: nnU-Net's step shape: deep-supervision outputs, a Dice + cross-entropy shaped loss
  over the outputs with a non-zero weight.
- :class:`SavedTensorCounter`: the distinct storages autograd saves for backward (saved-tensor hooks).
- :func:`live_tensor_tracker_class`: a TorchDispatchMode following every storage the step creates until it is
  freed (weak references on storages), recording the peak of live bytes. Works on the ``meta`` device, where
  tensors carry sizes but no data.
- :func:`autocast_emulation_class`: a TorchFunctionMode that casts convolution inputs to float16, emulating
  CUDA autocast (under which nnU-Net trains) on devices without it.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "SavedTensorCounter",
    "autocast_emulation_class",
    "deep_supervision_weights",
    "forward_and_loss",
    "live_tensor_tracker_class",
    "storage_key",
]

_CONV_FUNCTIONS = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"})


def deep_supervision_weights(num_outputs: int) -> list[float]:
    """nnU-Net's weights: 1/2^i, highest resolution first, the lowest output dropped, normalised to sum 1."""
    weights = [1.0 / 2**i for i in range(num_outputs)]
    if num_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def _loss(outputs: list[torch.Tensor], targets: list[torch.Tensor | None]) -> torch.Tensor:
    """A Dice + cross-entropy shaped loss: what nnU-Net's loss keeps for backward, not its exact value."""
    import torch
    import torch.nn.functional as F

    total = outputs[0].new_zeros((), dtype=torch.float32)
    for logits, target, weight in zip(outputs, targets, deep_supervision_weights(len(outputs))):
        if target is None:
            continue
        logits = logits.float()
        spatial = tuple(range(2, logits.ndim))
        cross_entropy = F.cross_entropy(logits, target)
        probabilities = torch.softmax(logits, 1)
        one_hot = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        one_hot.scatter_(1, target.unsqueeze(1), True)
        intersection = (probabilities * one_hot).sum(spatial)
        denominator = probabilities.sum(spatial) + one_hot.sum(spatial)
        dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
        total = total + weight * (cross_entropy - dice.mean())
    return total


def forward_and_loss(network: torch.nn.Module, data: torch.Tensor) -> tuple[list[torch.Tensor], list[Any], Any]:
    """Run the forward pass and the loss; one integer target per deep-supervision output with a weight."""
    import torch

    outputs = network(data)
    outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    targets = [
        torch.zeros((o.shape[0], *o.shape[2:]), dtype=torch.long, device=o.device) if w > 0 else None
        for o, w in zip(outputs, deep_supervision_weights(len(outputs)))
    ]
    return outputs, targets, _loss(outputs, targets)


def storage_key(tensor: torch.Tensor) -> int:
    """Identity of the memory behind a tensor: views and in-place results share it."""
    return int(tensor.untyped_storage()._cdata)


def _is_weight_copy(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a dtype cast of a weight (what autocast makes of every convolution weight)."""
    node = tensor.grad_fn
    if node is None or type(node).__name__ != "ToCopyBackward0":
        return False
    return any(type(parent).__name__ == "AccumulateGrad" for parent, _ in node.next_functions if parent is not None)


class SavedTensorCounter:
    """Records every distinct storage autograd saves for the backward pass.

    Casts of weights (float16 copies under AMP) are kept apart in ``weight_copies``: they do not grow
    with the batch and are not activations.
    """

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.weight_copies: dict[int, int] = {}

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        into = self.weight_copies if _is_weight_copy(tensor) else self.sizes
        into[storage_key(tensor)] = tensor.untyped_storage().nbytes()
        return tensor

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        """Count while the block runs."""
        import torch

        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor):
            yield

    def total_bytes(self, *, excluding: set[int]) -> int:
        """Bytes of the saved storages other than weight copies, leaving out ``excluding`` (weights, the batch)."""
        return sum(size for key, size in self.sizes.items() if key not in excluding)

    def weight_copy_bytes(self) -> int:
        """Bytes of the saved casts of weights."""
        return sum(self.weight_copies.values())


@functools.cache
def live_tensor_tracker_class() -> type[Any]:
    """A TorchDispatchMode that follows every storage created inside it until it is freed."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LiveTensorTracker(TorchDispatchMode):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.live: dict[int, int] = {}
            self.refs: dict[int, weakref.ref[Any]] = {}
            self.current_bytes = 0
            self.peak_bytes = 0

        def _freed(self, key: int, _ref: object) -> None:
            self.current_bytes -= self.live.pop(key, 0)
            self.refs.pop(key, None)

        def _track(self, tensor: Any) -> None:
            storage = tensor.untyped_storage()
            key = int(storage._cdata)
            if key in self.live:
                return
            self.live[key] = storage.nbytes()
            self.refs[key] = weakref.ref(storage, functools.partial(self._freed, key))
            self.current_bytes += self.live[key]
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            import torch

            result = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(result):
                if isinstance(leaf, torch.Tensor):
                    self._track(leaf)
            return result

    return LiveTensorTracker


@functools.cache
def autocast_emulation_class() -> type[Any]:
    """A TorchFunctionMode that runs convolutions in float16, as CUDA autocast does, on any device."""
    import torch
    from torch.overrides import TorchFunctionMode

    def half(value: Any) -> Any:
        return value.half() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    class AutocastEmulation(TorchFunctionMode):  # type: ignore[misc]
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if getattr(func, "__name__", "") in _CONV_FUNCTIONS:
                args = tuple(half(a) for a in args)
                kwargs = {k: half(v) for k, v in (kwargs or {}).items()}
            return func(*args, **(kwargs or {}))

    return AutocastEmulation
