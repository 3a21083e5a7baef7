"""The traced training step behind :mod:`nnseg.planning._memory` (torch is imported lazily here too).

- :func:`forward_and_loss`: the trainer's step: deep-supervision outputs and the trainer's own Dice +
  cross-entropy and weights (:mod:`nnseg.losses`, the base layer) over the outputs with a non-zero weight.
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
    "forward_and_loss",
    "live_tensor_tracker_class",
    "storage_key",
]

_CONV_FUNCTIONS = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"})


def forward_and_loss(network: torch.nn.Module, data: torch.Tensor) -> tuple[list[torch.Tensor], list[Any], Any]:
    """Run the forward pass and the trainer's loss; one label map per deep-supervision output with a weight.

    The loss runs in float32, as under CUDA autocast (softmax and cross-entropy are float32 operations there).
    """
    import torch

    from nnseg.losses import DiceCELoss, deep_supervision_weights

    outputs = network(data)
    outputs = list(outputs) if isinstance(outputs, list | tuple) else [outputs]
    weights = deep_supervision_weights(len(outputs))
    targets = [
        torch.zeros((o.shape[0], 1, *o.shape[2:]), dtype=torch.long, device=o.device) if w > 0 else None
        for o, w in zip(outputs, weights, strict=True)
    ]
    loss = DiceCELoss(batch_dice=False)
    total = outputs[0].new_zeros((), dtype=torch.float32)
    for logits, target, weight in zip(outputs, targets, weights, strict=True):
        if target is not None:  # the trainer's DeepSupervisionLoss skips the zero-weight outputs too
            total = total + weight * loss(logits.float(), target)
    return outputs, targets, total


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
