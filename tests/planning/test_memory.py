"""Measured memory of one training step: meta trace, its agreement with a real CPU run, and the plans' reports."""

from __future__ import annotations

import copy
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.losses import deep_supervision_weights
from nnseg.network import build_network
from nnseg.planning import ConfigurationPlan, MemoryReport, Plans
from nnseg.planning._memory import GB, MemoryMeasurement, attach_memory_reports, measure_training_step_memory
from nnseg.planning._memory_trace import SavedTensorCounter, live_tensor_tracker_class

UNET = "dynamic_network_architectures.architectures.unet"
SPEC = DatasetSpec(
    channel_names=("CT",), labels={"background": 0, "a": 1, "b": 2}, num_training=4, file_ending=".nii.gz"
)


def architecture(features: list[int], strides: list[list[int]], *, residual: bool = False) -> dict[str, Any]:
    """An nnU-Net architecture dict (3-D or 2-D from the length of the strides)."""
    n, ndim = len(features), len(strides[0])
    kwargs: dict[str, Any] = {
        "n_stages": n, "features_per_stage": features, "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
        "kernel_sizes": [[3] * ndim] * n, "strides": strides, "conv_bias": True,
        "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }  # fmt: skip
    if residual:
        kwargs.update(n_blocks_per_stage=[1, 3, 4, 6, 6, 6, 6][:n], n_conv_per_stage_decoder=[1] * (n - 1))
    else:
        kwargs.update(n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
    name = "ResidualEncoderUNet" if residual else "PlainConvUNet"
    return {"network_class_name": f"{UNET}.{name}", "arch_kwargs": kwargs,
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}  # fmt: skip


def configuration(arch: dict[str, Any], patch: list[int], batch: int, report: bool = True) -> dict[str, Any]:
    """An nnU-Net configuration dict, optionally with an nnseg memory report."""
    ndim = len(patch)
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    config: dict[str, Any] = {
        "data_identifier": f"nnUNetPlans_{ndim}d", "preprocessor_name": "DefaultPreprocessor", "batch_size": batch,
        "patch_size": patch, "median_image_size_in_voxels": [float(p) for p in patch], "spacing": [1.0] * ndim,
        "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
        "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_seg_kwargs": resampling,
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": resampling, "architecture": arch, "batch_dice": True,
    }  # fmt: skip
    if report:
        config["nnseg_memory_report"] = MemoryReport(estimate=1e8, budget=5.6e8, gpu_memory_gb=8.0).to_json()
    return config


def plans_json(configurations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A plans.json dict holding these configurations."""
    intensity = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -1.0, "max": 1.0,
                 "percentile_99_5": 1.0, "percentile_00_5": -1.0}  # fmt: skip
    return {
        "dataset_name": "Dataset001_Synthetic", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "original_median_shape_after_transp": [16, 32, 32],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": configurations, "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": intensity},
    }  # fmt: skip


def tiny_plan(patch: tuple[int, ...] = (8, 32, 32), batch: int = 2, *, residual: bool = False) -> ConfigurationPlan:
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2]] if len(patch) == 3 else [[1, 1], [2, 2], [2, 2]]
    arch = architecture([4, 8, 16], strides, residual=residual)
    return Plans.from_json(plans_json({"3d_fullres": configuration(arch, list(patch), batch)}))["3d_fullres"]


def measure(plan: ConfigurationPlan, **kwargs: Any) -> MemoryMeasurement:
    return measure_training_step_memory(plan, num_input_channels=1, num_outputs=3, **kwargs)


# ------------------------------------------------------------------------------------------ the figures
def test_measurement_breaks_down_into_its_parts() -> None:
    m = measure(tiny_plan())
    network = build_network(tiny_plan().architecture, num_input_channels=1, num_outputs=3)
    weights = sum(p.numel() for p in network.parameters())
    assert m.parameter_bytes == 4 * weights
    assert m.optimizer_bytes == m.gradient_bytes <= m.parameter_bytes  # the unused lowest head gets no gradient
    assert (
        m.input_bytes == 2 * 8 * 32 * 32 * 4 + 2 * 8 * 32 * 32 * 8
    )  # float32 batch + int64 target (one weighted output)
    assert m.peak_bytes >= m.parameter_bytes + m.optimizer_bytes + m.saved_activation_bytes + m.input_bytes
    assert m.activation_bytes_per_sample == m.saved_activation_bytes // 2
    assert (m.device, m.method, m.amp, m.batch_size, m.patch_size) == (
        "meta",
        "meta trace of live tensor storages",
        True,
        2,
        (8, 32, 32),
    )
    assert "activations saved for backward" in m.note
    assert "not counted: cuDNN/convolution workspaces" in m.note
    assert m.to_json()["activation_bytes_per_sample"] == m.activation_bytes_per_sample


def test_memory_grows_with_batch_size_and_activations_per_sample_stay() -> None:
    plan = tiny_plan()
    small, large = measure(plan, batch_size=1), measure(plan, batch_size=4)
    assert large.peak_bytes > small.peak_bytes
    assert large.saved_activation_bytes == pytest.approx(4 * small.saved_activation_bytes, abs=64)  # + loss scalars
    assert large.activation_bytes_per_sample == pytest.approx(small.activation_bytes_per_sample, abs=64)
    assert large.weight_copy_bytes == small.weight_copy_bytes > 0


def test_memory_grows_with_patch_size() -> None:
    small, large = measure(tiny_plan((8, 32, 32))), measure(tiny_plan((16, 64, 64)))
    assert large.peak_bytes > small.peak_bytes
    assert large.saved_activation_bytes == pytest.approx(8 * small.saved_activation_bytes, rel=0.02)


def test_amp_stores_convolution_activations_in_half_precision() -> None:
    plan = tiny_plan((16, 64, 64), residual=True)
    full, mixed = measure(plan, amp=False), measure(plan, amp=True)
    assert 0.4 < mixed.saved_activation_bytes / full.saved_activation_bytes < 0.7
    assert mixed.parameter_bytes == full.parameter_bytes
    assert mixed.gradient_bytes == full.gradient_bytes  # gradients of float32 weights stay float32
    assert full.weight_copy_bytes == 0
    # every convolution weight gets a float16 copy (half its float32 size); norm weights are not cast
    assert 0.4 * mixed.parameter_bytes < mixed.weight_copy_bytes < 0.5 * mixed.parameter_bytes


def test_meta_measurement_of_a_huge_plan_allocates_nothing() -> None:
    plan = tiny_plan((256, 256, 256), batch=8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    m = measure(plan)
    grown_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024**2
    assert m.peak_bytes > 20 * GB
    assert grown_gb < 0.5


@pytest.mark.parametrize(("amp", "residual"), [(False, False), (True, False), (False, True)],
                         ids=["plain-float32", "plain-amp", "resenc-float32"])  # fmt: skip
def test_real_cpu_step_agrees_with_the_meta_trace(amp: bool, residual: bool) -> None:
    """Same hooks, real tensors: the meta trace must match within 1 % (it matches exactly today)."""
    plan = tiny_plan((8, 32, 32), residual=residual)
    meta, cpu = measure(plan, amp=amp), measure(plan, device="cpu", amp=amp)
    assert cpu.device == "cpu"
    for field in ("peak_bytes", "saved_activation_bytes", "gradient_bytes", "input_bytes", "weight_copy_bytes"):
        assert getattr(cpu, field) == pytest.approx(getattr(meta, field), rel=0.01), field


def test_cpu_float16_gap_is_a_config_error_pointing_to_meta() -> None:
    with pytest.raises(ConfigError, match="cannot run with amp=True on cpu .*use device='meta'"):
        measure(tiny_plan(residual=True), device="cpu", amp=True)  # CPU has no float16 avg_pool3d


def test_two_d_plans_are_measured() -> None:
    m = measure(tiny_plan((64, 64), batch=4))
    assert m.patch_size == (64, 64)
    assert m.saved_activation_bytes > 0


def test_worked_example_resenc_l_fits_its_24_gb_target() -> None:
    """facts §5: ResEnc-L 3d_fullres for CT spacing (2.5, 0.8, 0.8) is patch (80, 256, 256), batch 2, 7 stages."""
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
    arch = architecture([32, 64, 128, 256, 320, 320, 320], strides, residual=True)
    arch["arch_kwargs"]["kernel_sizes"] = [[1, 3, 3]] + [[3, 3, 3]] * 6
    plan = Plans.from_json(plans_json({"3d_fullres": configuration(arch, [80, 256, 256], 2)}))["3d_fullres"]
    m = measure(plan)
    assert 12 * GB < m.peak_bytes < 24 * GB
    assert 6 * GB < m.activation_bytes_per_sample < 9 * GB


# -------------------------------------------------------------------------------------- the machinery
def test_deep_supervision_weights_follow_nnunet() -> None:
    assert deep_supervision_weights(5) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])
    assert deep_supervision_weights(1) == (1.0,)


def test_saved_tensor_counter_counts_each_storage_once() -> None:
    a = torch.ones(10, 10, requires_grad=True)
    b = torch.ones(10, 10)
    counter = SavedTensorCounter()
    with counter.hooks():
        loss = (a * b).sum() + (a * b[:5].repeat(2, 1)).sum() + (a * b.view(100).view(10, 10)).sum()
    loss.backward()
    keys_b = {b.untyped_storage()._cdata}
    assert counter.total_bytes(excluding=set()) == 400 + 400  # b (and its view) once, the repeated copy once
    assert counter.total_bytes(excluding=keys_b) == 400


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_live_tracker_follows_frees(device: str) -> None:
    tracker = live_tensor_tracker_class()()
    with tracker:
        a = torch.ones(1000, device=device)
        b = a * 2
        c = b + 1
        del b
        d = c * 3
        assert tracker.current_bytes == 3 * 4000
    del a, c, d
    assert tracker.peak_bytes == 3 * 4000
    assert tracker.current_bytes == 0


def test_importing_planning_does_not_import_torch() -> None:
    probe = "import sys, nnseg.planning._memory; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("device", "message"), [
    ("tpu", "device 'tpu' is not a torch device; use 'meta', 'cpu' or 'cuda:N'"),
    ("mps", "device 'mps' is not supported; use 'meta', 'cpu' or 'cuda:N'"),
])  # fmt: skip
def test_bad_device_is_a_config_error(device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        measure(tiny_plan(), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_to_use_meta() -> None:
    with pytest.raises(ConfigError, match="'cuda:0' requested but CUDA is not available; use device='meta'"):
        measure(tiny_plan(), device="cuda:0")


@pytest.mark.parametrize("batch", [0, -1, 1.5, True])
def test_bad_batch_size_is_a_config_error(batch: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=r"measure_training_step_memory: batch_size must be an integer >= 1; got .*Set batch_size=1 or more",
    ):
        measure(tiny_plan(), batch_size=batch)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_measurement_reads_the_allocator_peak() -> None:  # pragma: no cover - no GPU in CI
    m = measure(tiny_plan(), device="cuda:0")
    assert m.method == "torch.cuda.max_memory_allocated"
    assert m.peak_bytes >= m.parameter_bytes + m.optimizer_bytes


# ----------------------------------------------------------------------------------------- plans level
def _plans_with_cascade() -> Plans:
    arch = architecture([4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    lowres = configuration(arch, [8, 16, 16], 2)
    cascade = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    return Plans.from_json(plans_json({
        "2d": configuration(architecture([4, 8, 16], [[1, 1], [2, 2], [2, 2]]), [32, 32], 4, report=False),
        "3d_lowres": {**lowres, "next_stage": "3d_cascade_fullres"},
        "3d_fullres": configuration(arch, [8, 32, 32], 2),
        "3d_cascade_fullres": cascade,
    }))  # fmt: skip


def test_attach_fills_every_report_and_keeps_the_plans_shape(tmp_path: Path) -> None:
    plans = _plans_with_cascade()
    original = copy.deepcopy(plans.to_json())
    measured = attach_memory_reports(plans, SPEC)
    assert plans.to_json() == original  # the input is not changed
    full = measured["3d_fullres"].memory_report
    assert full is not None
    assert full.measured_bytes == measure(plans["3d_fullres"]).peak_bytes
    assert (full.measured_device, full.measurement_method) == ("meta", "meta trace of live tensor storages")
    assert "per sample" in full.note
    assert (full.estimate, full.budget, full.gpu_memory_gb) == (1e8, 5.6e8, 8.0)
    lowres = measured["3d_lowres"].memory_report
    assert lowres is not None
    assert lowres.measured_bytes is not None
    assert lowres.measured_bytes < full.measured_bytes
    assert measured["3d_cascade_fullres"].memory_report == full
    assert measured.configurations["3d_cascade_fullres"]["inherits_from"] == "3d_fullres"
    assert measured["2d"].memory_report is None  # nothing to fill in
    measured.save(tmp_path / "plans.json")
    assert Plans.load(tmp_path / "plans.json")["3d_fullres"].memory_report == full


def test_attach_without_any_report_returns_the_same_plans() -> None:
    arch = architecture([4, 8, 16], [[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    plans = Plans.from_json(plans_json({"3d_fullres": configuration(arch, [8, 32, 32], 2, report=False)}))
    assert attach_memory_reports(plans, SPEC) is plans


def test_cuda_code_path_runs_with_the_allocator_calls_stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch cannot run here; run it on CPU with torch.cuda's counters replaced, to catch slips."""
    from nnseg.planning import _memory

    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 123_456_789)
    network = build_network(tiny_plan().architecture, num_input_channels=1, num_outputs=3)
    figures = _memory._measure_cuda(network, (2, 1, 8, 32, 32), torch.device("cpu"), amp=False)
    assert calls == ["sync", "reset", "sync"]
    assert (figures["peak_bytes"], figures["method"]) == (123_456_789, "torch.cuda.max_memory_allocated")
    assert figures["saved_activation_bytes"] == measure(tiny_plan(), amp=False).saved_activation_bytes
    assert figures["optimizer_bytes"] == figures["gradient_bytes"] > 0
