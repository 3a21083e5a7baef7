"""Device-side augmentation: same crops and parameters as the CPU pipeline, same distributions, deterministic."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.training import AugmentationConfig, Batch, TrainingLoader
from nnseg.training import _augment_device as device_module
from nnseg.training import _augmentation as cpu_module
from nnseg.training._augment_device import spatial_transform_one_pass
from nnseg.training._augment_spatial import spatial_transform

Store = tuple[object, object, object]


def same(a: Batch, b: Batch) -> bool:
    return torch.equal(a.data, b.data) and all(torch.equal(x, y) for x, y in zip(a.target, b.target))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    plan, spec = make_plan(), make_spec()
    shapes = [(22, 24, 28), (24, 22, 22), (20, 26, 24)]
    cases = {f"case_{i}": threshold_case(shape, seed=20 + i) for i, shape in enumerate(shapes)}
    return write_store(tmp_path_factory.mktemp("device"), plan, spec, cases), plan, spec


def loaders(store: Store, config: AugmentationConfig, **options: object) -> tuple[TrainingLoader, TrainingLoader]:
    s, plan, spec = store
    common = {"seed": 5, "augmentation": config}
    cpu = TrainingLoader(s, s.case_ids(), plan, spec, num_workers=0, **common)  # type: ignore[arg-type, attr-defined]
    device = TrainingLoader(s, s.case_ids(), plan, spec, augmentation_device="cpu", **common, **options)  # type: ignore[arg-type, attr-defined]
    return cpu, device


def test_without_spatial_transform_the_device_path_is_the_cpu_pipeline_bit_for_bit(store: Store) -> None:
    """Same crops, same generator states, same intensity code: only the spatial arithmetic may differ."""
    _, plan, spec = store
    config = AugmentationConfig.for_plan(plan, spec)  # type: ignore[arg-type]
    loud = dataclasses.replace(config, p_rotation=0.0, p_scaling=0.0, p_noise=1.0, p_blur=1.0, p_brightness=1.0,
                               p_contrast=1.0, p_low_resolution=1.0, p_gamma=1.0, p_gamma_inverted=1.0)  # fmt: skip
    cpu, device = loaders(store, loud, num_workers=0)
    for step in (0, 3, 8):
        assert same(cpu.batch(step), device.batch(step))


def test_spatial_parameters_are_the_cpu_pipelines(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[str, list[object]] = {"cpu": [], "device": []}

    def recorder(name: str, function: object):  # type: ignore[no-untyped-def]
        def wrapped(data, seg, out, angles, scale):  # type: ignore[no-untyped-def]
            drawn[name].append((None if angles is None else tuple(angles), scale))
            return function(data, seg, out, angles, scale)  # type: ignore[operator]

        return wrapped

    monkeypatch.setattr(cpu_module, "spatial_transform", recorder("cpu", spatial_transform))
    monkeypatch.setattr(device_module, "spatial_transform_one_pass", recorder("device", spatial_transform_one_pass))
    _, plan, spec = store
    cpu, device = loaders(store, AugmentationConfig.for_plan(plan, spec), num_workers=0)  # type: ignore[arg-type]
    for step in range(30):
        cpu.batch(step)
        device.batch(step)
    assert drawn["cpu"] == drawn["device"]
    assert sum(a is not None for a, _ in drawn["cpu"]) > 0  # rotations happened


def test_one_pass_spatial_transform_matches_the_per_label_one() -> None:
    rng = np.random.default_rng(0)
    data = torch.from_numpy(rng.standard_normal((2, 30, 30, 30)).astype(np.float32))
    seg = torch.from_numpy((data[:1] > 0.3).numpy().astype(np.int16) + (data[:1] > 1.2).numpy().astype(np.int16))
    seg[:, :3] = -1
    for angles, scale in (([0.3, -0.2, 0.4], 1.2), (None, 0.8), ([0.1, 0.0, -0.5], None)):
        image_a, labels_a = spatial_transform(data, seg, (16, 16, 16), angles, scale)
        image_b, labels_b = spatial_transform_one_pass(data, seg, (16, 16, 16), angles, scale)
        assert torch.allclose(image_a, image_b, atol=1e-5)
        assert (labels_a == labels_b).float().mean() > 0.995  # only exact ties may break differently


def test_augmented_distributions_match(store: Store) -> None:
    """Intensity mean/std, label fractions, rotation and mirror frequencies: both paths alike over many steps."""
    _, plan, spec = store
    config = dataclasses.replace(AugmentationConfig.for_plan(plan, spec), p_rotation=0.5, p_scaling=0.5)  # type: ignore[arg-type]
    cpu, device = loaders(store, config, num_workers=0)
    stats = {}
    for name, loader in (("cpu", cpu), ("device", device)):
        batches = [loader.batch(step) for step in range(40)]
        data = torch.cat([b.data for b in batches])
        labels = torch.cat([b.target[0] for b in batches])
        stats[name] = np.array(
            [float(data.mean()), float(data.std()), *((labels == k).float().mean().item() for k in (0, 1, 2))]
        )
    assert np.allclose(stats["cpu"], stats["device"], atol=0.02), stats


def test_parameter_histograms_follow_the_configured_ranges(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    angles, scales = [], []

    def recorder(data, seg, out, a, s):  # type: ignore[no-untyped-def]
        if a is not None:
            angles.extend(a)
        if s is not None:
            scales.append(s)
        return spatial_transform_one_pass(data, seg, out, a, s)

    monkeypatch.setattr(device_module, "spatial_transform_one_pass", recorder)
    _, plan, spec = store
    config = dataclasses.replace(AugmentationConfig.for_plan(plan, spec), p_rotation=1.0, p_scaling=1.0,  # type: ignore[arg-type]
                                 scaling_range=(0.7, 1.4))  # fmt: skip
    _, device = loaders(store, config, num_workers=0)
    for step in range(60):
        device.batch(step)
    counts, _ = np.histogram(angles, bins=4, range=(-math.pi / 6, math.pi / 6))
    assert counts.min() > 0.15 * len(angles)  # uniform: 25 % per bin
    assert min(scales) >= 0.7
    assert max(scales) <= 1.4
    assert abs(np.mean(scales) - 1.05) < 0.06


def test_device_batches_are_a_pure_function_of_seed_and_step(store: Store) -> None:
    _, plan, spec = store
    config = AugmentationConfig.for_plan(plan, spec)  # type: ignore[arg-type]
    _, in_process = loaders(store, config, num_workers=0)
    _, workers = loaders(store, config, num_workers=2)
    a = list(in_process.iterate(start_step=0, num_steps=4))
    b = list(workers.iterate(start_step=0, num_steps=4))
    resumed = list(workers.iterate(start_step=2, num_steps=2))
    assert all(same(x, y) for x, y in zip(a, b))
    assert all(same(x, y) for x, y in zip(a[2:], resumed))
    assert [x.step for x in b] == [0, 1, 2, 3]
    assert a[0].data.device.type == "cpu"


def test_bad_augmentation_device_is_refused(store: Store) -> None:
    s, plan, spec = store
    with pytest.raises(ConfigError, match="augmentation_device must be a torch device such as 'cpu'.*got 'gpu0'"):
        TrainingLoader(s, s.case_ids(), plan, spec, augmentation_device="gpu0")  # type: ignore[arg-type, attr-defined]
