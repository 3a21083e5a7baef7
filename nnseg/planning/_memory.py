"""Measure the memory of one training step of a planned network; attach it to the plans' memory reports.

The planner's estimate counts feature-map elements against a reference number; it says nothing in bytes.
:func:`measure_training_step_memory` runs one training step of the planned network at the planned batch and
patch (forward with deep supervision, a Dice + cross-entropy shaped loss, backward) and reports its bytes:
on CUDA for real (``torch.cuda.max_memory_allocated``); otherwise on the ``meta`` device, where tensors have
shapes but no data, so nothing is computed or allocated, while a dispatch-level tracer follows every storage
the step creates and frees and records the peak of live bytes. ``device="cpu"`` runs the traced step for
real (small plans; it checks the meta trace). torch is imported only when a measurement runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nnseg._checks import parse_int
from nnseg.errors import ConfigError
from nnseg.network import build_network
from nnseg.planning._fields import MEMORY_REPORT_KEY
from nnseg.planning._frozen import to_jsonable
from nnseg.planning._memory_trace import (
    SavedTensorCounter,
    autocast_emulation_class,
    forward_and_loss,
    live_tensor_tracker_class,
    storage_key,
)

if TYPE_CHECKING:
    import torch

    from nnseg.dataset import DatasetSpec
    from nnseg.planning._configuration import ConfigurationPlan, MemoryReport
    from nnseg.planning._plans import Plans

__all__ = ["MemoryMeasurement", "attach_memory_reports", "measure_training_step_memory"]

GB = 1024**3
_OWNER = "measure_training_step_memory"
CUDA_METHOD = "torch.cuda.max_memory_allocated"


@dataclass(frozen=True, slots=True)
class MemoryMeasurement:
    """Memory of one training step of a planned network.

    Args:
        peak_bytes: The measured figure: the most memory the step holds at once.
        saved_activation_bytes: Activations autograd keeps for the backward pass, for the whole batch.
        parameter_bytes: Network weights (float32).
        gradient_bytes: Weight gradients (float32).
        optimizer_bytes: SGD momentum buffers (one per weight, float32).
        input_bytes: The input batch and its targets (one per deep-supervision output used by the loss).
        weight_copy_bytes: float16 copies of the weights kept for backward under AMP (0 without AMP).
        batch_size: Samples per step.
        patch_size: Spatial patch.
        device: Where it was measured (``"meta"``, ``"cpu"``, ``"cuda:0"``).
        amp: Whether mixed precision (float16 convolutions, as nnU-Net trains on CUDA) was used/emulated.
        method: How ``peak_bytes`` was obtained.
        note: What ``peak_bytes`` counts and what it does not.
        seconds: Wall time of the measurement.
    """

    peak_bytes: int
    saved_activation_bytes: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    input_bytes: int
    weight_copy_bytes: int
    batch_size: int
    patch_size: tuple[int, ...]
    device: str
    amp: bool
    method: str
    note: str
    seconds: float

    @property
    def activation_bytes_per_sample(self) -> int:
        """Saved activations of one sample (activations grow linearly with the batch)."""
        return self.saved_activation_bytes // self.batch_size

    @property
    def peak_gb(self) -> float:
        """``peak_bytes`` in GiB (1024**3 bytes), the unit GPU memory targets are given in."""
        return self.peak_bytes / GB

    def to_json(self) -> dict[str, Any]:
        """Return the measurement as a JSON dict (plus ``activation_bytes_per_sample``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["patch_size"] = list(self.patch_size)
        data["activation_bytes_per_sample"] = self.activation_bytes_per_sample
        return data


def measure_training_step_memory(
    plan: ConfigurationPlan,
    *,
    num_input_channels: int,
    num_outputs: int,
    device: str | torch.device = "meta",
    batch_size: int | None = None,
    amp: bool = True,
) -> MemoryMeasurement:
    """Measure the memory one training step of ``plan``'s network needs at its batch and patch size.

    The step is nnU-Net's: network with deep supervision, a Dice + cross-entropy loss over the weighted
    deep-supervision outputs, backward; SGD with momentum holds one buffer per weight; gradients start
    unset (``zero_grad(set_to_none=True)``).

    Args:
        plan: The configuration (``plans["3d_fullres"]``).
        num_input_channels: Image channels (``spec.num_channels``).
        num_outputs: Segmentation heads (``spec.num_segmentation_heads``).
        device: ``"meta"`` (default; no memory is used, nothing is computed), ``"cpu"`` (runs the step for
            real; small plans only) or ``"cuda"``/``"cuda:N"`` (runs for real and reads the allocator's peak).
        batch_size: Samples per step; defaults to the plan's batch size.
        amp: Mixed precision as nnU-Net trains on CUDA: convolutions in float16, everything else as torch's
            autocast leaves it. On meta/cpu it is emulated by casting the inputs of every convolution.

    Returns:
        The measurement. ``peak_bytes`` is the figure to compare with the GPU memory.

    Raises:
        ConfigError: If ``device`` or ``batch_size`` is invalid, or CUDA is requested but not available.
        PlansError: If the plan's network cannot be built.

    Example:
        >>> m = measure_training_step_memory(plans["3d_fullres"], num_input_channels=1, num_outputs=3)
        >>> print(f"{m.peak_gb:.1f} GB, {m.activation_bytes_per_sample / 2**30:.2f} GB activations per sample")
    """
    import torch

    torch_device = _parse_device(device)
    batch = plan.batch_size if batch_size is None else parse_int(_OWNER, "batch_size", batch_size, minimum=1)
    started = time.perf_counter()
    with torch.device(torch_device):
        network = build_network(
            plan.architecture,
            num_input_channels=num_input_channels,
            num_outputs=num_outputs,
            deep_supervision=True,
            initialize=torch_device.type != "meta",
        )
    network.train()
    shape = (batch, num_input_channels, *plan.patch_size)
    if torch_device.type == "cuda":
        figures = _measure_cuda(network, shape, torch_device, amp=amp)
    else:
        figures = _measure_traced(network, shape, torch_device, amp=amp)
    return _finish(figures, batch, plan.patch_size, str(torch_device), amp, time.perf_counter() - started)


def _parse_device(device: str | torch.device) -> torch.device:
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"measure_training_step_memory: device {device!r} is not a torch device; use 'meta', 'cpu' or 'cuda:N'."
        ) from err
    if parsed.type not in ("meta", "cpu", "cuda"):
        raise ConfigError(
            f"measure_training_step_memory: device {device!r} is not supported; use 'meta', 'cpu' or 'cuda:N'."
        )
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"measure_training_step_memory: device {device!r} requested but CUDA is not available; "
            "use device='meta' to measure without a GPU."
        )
    return parsed


def _finish(figures: dict[str, Any], batch: int, patch: tuple[int, ...], device: str, amp: bool,
            seconds: float) -> MemoryMeasurement:  # fmt: skip
    precision = "float16 convolutions (AMP)" if amp else "float32 throughout"
    saved, gb = figures["saved_activation_bytes"], {k: v / GB for k, v in figures.items() if k.endswith("_bytes")}
    parts = (
        f"weights {gb['parameter_bytes']:.2f}, SGD momentum {gb['optimizer_bytes']:.2f}, weight gradients "
        f"{gb['gradient_bytes']:.2f}, input batch and targets {gb['input_bytes']:.2f}, activations saved for "
        f"backward {gb['saved_activation_bytes']:.2f} ({saved / batch / GB:.3f} per sample), float16 weight copies "
        f"{gb['weight_copy_bytes']:.2f} and the transient buffers of the backward pass"
    )
    if figures["method"] == CUDA_METHOD:
        counted = (
            f"everything torch allocated during the step (after a warm-up step), i.e. {parts}, and cuDNN workspaces"
        )
        not_counted = "the caching allocator's reserve and fragmentation, the CUDA context (about 0.3-0.5 GB)"
    else:
        counted = parts
        not_counted = (
            "cuDNN/convolution workspaces, the caching allocator's reserve and fragmentation, "
            "the CUDA context (about 0.3-0.5 GB per process)"
        )
    note = (
        f"one training step at batch {batch}, patch {list(patch)}, {precision}: peak {gb['peak_bytes']:.2f} GB "
        f"(GiB) counts {counted}; not counted: {not_counted}, data-loader memory."
    )
    return MemoryMeasurement(
        batch_size=batch, patch_size=tuple(patch), device=device, amp=amp, note=note, seconds=seconds, **figures
    )


# ------------------------------------------------------------------------------------- traced (meta / cpu)
def _measure_traced(
    network: torch.nn.Module, shape: tuple[int, ...], device: torch.device, *, amp: bool
) -> dict[str, Any]:
    """Run the step under the live-storage tracer (and the AMP emulation); return the byte figures."""
    import torch

    tracker = live_tensor_tracker_class()()
    saved = SavedTensorCounter()
    amp_mode = autocast_emulation_class()() if amp else contextlib.nullcontext()
    try:
        with torch.enable_grad(), tracker, amp_mode:
            data = torch.zeros(shape, device=device)
            with saved.hooks():
                outputs, targets, loss = forward_and_loss(network, data)
            loss.backward()
    except NotImplementedError as err:  # CPU kernels lack some float16 ops (e.g. avg_pool3d)
        raise ConfigError(
            f"measure_training_step_memory: this network cannot run with amp=True on {device} ({err}); "
            "use device='meta' (same figures, nothing computed) or amp=False."
        ) from err
    weights = list(network.parameters())
    inputs = [data, *(t for t in targets if t is not None)]
    del outputs, loss
    return _figures(weights, inputs, saved, peak_step_bytes=tracker.peak_bytes)


def _figures(
    weights: list[Any], inputs: list[Any], saved: SavedTensorCounter, *, peak_step_bytes: int
) -> dict[str, Any]:
    """Sum up the components; the peak is weights + momentum + the step's own peak of live tensors."""
    parameter_bytes = sum(w.numel() * 4 for w in weights)
    trained = [w for w in weights if w.grad is not None]
    gradient_bytes = sum(w.numel() * 4 for w in trained)
    optimizer_bytes = gradient_bytes  # SGD momentum: one float32 buffer per trained weight
    excluded = {storage_key(t) for t in (*weights, *inputs)}
    return {
        "peak_bytes": int(parameter_bytes + optimizer_bytes + peak_step_bytes),
        "saved_activation_bytes": int(saved.total_bytes(excluding=excluded)),
        "parameter_bytes": int(parameter_bytes),
        "gradient_bytes": int(gradient_bytes),
        "optimizer_bytes": int(optimizer_bytes),
        "input_bytes": int(sum(t.untyped_storage().nbytes() for t in inputs)),
        "weight_copy_bytes": int(saved.weight_copy_bytes()),
        "method": f"{'meta' if inputs[0].device.type == 'meta' else 'cpu'} trace of live tensor storages",
    }


# ------------------------------------------------------------------------------------------------- CUDA
def _measure_cuda(
    network: torch.nn.Module, shape: tuple[int, ...], device: torch.device, *, amp: bool
) -> dict[str, Any]:
    """Run a warm-up step (creates the momentum buffers), then a measured step; read the allocator's peak."""
    import torch

    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    saved = SavedTensorCounter()

    def step(count_saved: bool) -> list[Any]:
        optimizer.zero_grad(set_to_none=True)
        data = torch.zeros(shape, device=device)
        with torch.autocast("cuda", enabled=amp), saved.hooks() if count_saved else contextlib.nullcontext():
            _, targets, loss = forward_and_loss(network, data)
        loss.backward()
        optimizer.step()
        return [data, *(t for t in targets if t is not None)]

    step(count_saved=False)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    inputs = step(count_saved=True)
    torch.cuda.synchronize(device)
    figures = _figures(list(network.parameters()), inputs, saved, peak_step_bytes=0)
    figures["peak_bytes"] = int(torch.cuda.max_memory_allocated(device))
    figures["method"] = CUDA_METHOD
    return figures


# ------------------------------------------------------------------------------------------- plans level
def attach_memory_reports(
    plans: Plans, spec: DatasetSpec, *, device: str | torch.device = "meta", amp: bool = True
) -> Plans:
    """Measure every configuration that has a memory report and return plans with the measurement filled in.

    ``measured_bytes``, ``measured_device``, ``measurement_method`` and ``note`` of each
    :class:`~nnseg.planning.MemoryReport` are set from :func:`measure_training_step_memory`. Configurations
    without a memory report (e.g. plans written by nnU-Net) are left as they are. Configurations that
    inherit from another keep ``inherits_from``; identical networks at identical batch and patch are
    measured once.

    Args:
        plans: The plans (from a planner, or loaded).
        spec: The dataset, for the number of input channels and segmentation heads.
        device: Where to measure (see :func:`measure_training_step_memory`).
        amp: Emulate/use mixed precision as nnU-Net trains on CUDA.

    Returns:
        New plans; ``plans`` is unchanged.
    """
    updates: dict[str, Mapping[str, Any]] = {}
    cache: dict[str, MemoryMeasurement] = {}
    for name in plans.configuration_names:
        plan = plans[name]
        if plan.memory_report is None:
            continue
        key = json.dumps([plan.architecture.to_json(), list(plan.patch_size), plan.batch_size], sort_keys=True)
        if key not in cache:
            cache[key] = measure_training_step_memory(
                plan,
                num_input_channels=spec.num_channels,
                num_outputs=spec.num_segmentation_heads,
                device=device,
                amp=amp,
            )
        report = _with_measurement(plan.memory_report, cache[key])
        updates[name] = {**to_jsonable(plans.configurations[name]), MEMORY_REPORT_KEY: report.to_json()}
    return plans.with_configurations(updates) if updates else plans


def _with_measurement(report: MemoryReport, measurement: MemoryMeasurement) -> MemoryReport:
    return dataclasses.replace(
        report,
        measured_bytes=measurement.peak_bytes,
        measured_device=measurement.device,
        measurement_method=measurement.method,
        note=measurement.note,
    )
