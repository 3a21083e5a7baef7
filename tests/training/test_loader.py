"""Loaders: determinism per step across worker counts and restarts, oversampling, validation, bad input."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._store import PreprocessedStore
from nnseg.training import (
    AugmentationConfig,
    Batch,
    BatchFactory,
    LoaderError,
    PatchSampler,
    TrainingLoader,
    ValidationLoader,
    iterate_batches,
)

Store = tuple[PreprocessedStore, ConfigurationPlan, object]


def same(a: Batch, b: Batch) -> bool:
    """Bitwise equality of two batches."""
    return (
        a.step == b.step
        and a.case_ids == b.case_ids
        and torch.equal(a.data, b.data)
        and len(a.target) == len(b.target)
        and all(torch.equal(x, y) for x, y in zip(a.target, b.target))
    )


def loud(config: AugmentationConfig) -> AugmentationConfig:
    """Every random transform on, so determinism covers all of them."""
    names = [f.name for f in dataclasses.fields(config) if f.name.startswith("p_") and "per" not in f.name]
    return dataclasses.replace(config, **{name: 1.0 for name in names})


@pytest.fixture(scope="module")
def loader_args(threshold_store: Store) -> dict[str, object]:
    store, plan, spec = threshold_store
    return {"store": store, "case_ids": store.case_ids(), "plan": plan, "spec": spec, "seed": 7,
            "augmentation": loud(AugmentationConfig.for_plan(plan, spec))}  # fmt: skip


def test_batch_layout(loader_args: dict[str, object]) -> None:
    batch = TrainingLoader(**loader_args, num_workers=0).batch(0)  # type: ignore[arg-type]
    assert batch.data.shape == (2, 1, 16, 16, 16)
    assert batch.data.dtype == torch.float32
    assert [t.shape for t in batch.target] == [(2, 1, 16, 16, 16), (2, 1, 8, 8, 8)]  # 3 stages: 2 outputs
    assert all(t.dtype == torch.int16 for t in batch.target)
    assert set(torch.unique(batch.target[0]).tolist()) <= {0, 1, 2}


def test_same_batches_with_0_1_2_workers_and_after_restart(loader_args: dict[str, object]) -> None:
    runs = {}
    for workers in (0, 1, 2):
        loader = TrainingLoader(**loader_args, num_workers=workers)  # type: ignore[arg-type]
        runs[workers] = list(loader.iterate(start_step=0, num_steps=4))
    resumed = list(TrainingLoader(**loader_args, num_workers=2).iterate(start_step=2, num_steps=2))  # type: ignore[arg-type]
    assert [b.step for b in runs[0]] == [0, 1, 2, 3]
    for workers in (1, 2):
        assert all(same(a, b) for a, b in zip(runs[0], runs[workers]))
    assert all(same(a, b) for a, b in zip(runs[0][2:], resumed))
    assert not torch.equal(runs[0][0].data, runs[0][1].data)
    other_seed = TrainingLoader(**{**loader_args, "seed": 8}, num_workers=0).batch(0)  # type: ignore[arg-type]
    assert not torch.equal(other_seed.data, runs[0][0].data)


def test_closing_the_iterator_stops_the_workers(loader_args: dict[str, object]) -> None:
    iterator = TrainingLoader(**loader_args, num_workers=2).iterate()  # type: ignore[arg-type]
    next(iterator)
    assert multiprocessing.active_children()
    iterator.close()
    assert not multiprocessing.active_children()


def test_validation_loader_repeats_the_same_unaugmented_batches(threshold_store: Store) -> None:
    store, plan, spec = threshold_store
    loader = ValidationLoader(store, store.case_ids(), plan, spec, num_batches=3, num_workers=0)  # type: ignore[arg-type]
    first, second = list(loader), list(loader)
    assert len(first) == len(loader) == 3
    assert all(same(a, b) for a, b in zip(first, second))
    for batch in first:  # unaugmented: the label is still exactly the threshold of the image
        image, label = batch.data[:, 0], batch.target[0][:, 0]
        inside = image != 0
        expected = (image > 0.3).to(torch.int16) + (image > 1.0).to(torch.int16)
        assert torch.equal(label[inside], expected[inside])


def test_oversampling_fraction(tmp_path: Path) -> None:
    plan, spec = make_plan(batch_size=3), make_spec()
    data = np.zeros((1, 40, 40, 40), np.float32)
    seg = np.zeros((1, 40, 40, 40), np.int8)
    seg[0, 33:35, 33:35, 33:35] = 1  # rare: a random 16^3 crop rarely holds it
    store = write_store(tmp_path, plan, spec, {"rare": (data, seg)})
    sampler = PatchSampler(plan.patch_size, batch_size=3)
    factory = BatchFactory(store, ["rare"], sampler, AugmentationConfig(), seed=0, augment=False)
    has_fg = np.array([[bool((t > 0).any()) for t in factory(s).target[0]] for s in range(60)])
    assert has_fg[:, 2].all()  # round(3 * 0.67) = 2: the last sample of each batch is forced
    assert has_fg[:, :2].mean() < 0.25  # the others are random crops
    assert 1 / 3 <= has_fg.mean() < 0.5


def test_failing_case_is_named_and_never_hangs(tmp_path: Path) -> None:
    plan, spec = make_plan(), make_spec()
    store = write_store(tmp_path, plan, spec, {"broken_case": threshold_case((20, 20, 20), seed=0)})
    store.path("broken_case", "data").write_bytes(b"not a blosc2 array")
    for workers in (0, 2):
        loader = TrainingLoader(store, ["broken_case"], plan, spec, num_workers=workers)
        with pytest.raises(LoaderError, match="step 0, sample 0: case 'broken_case' failed in the data pipeline"):
            next(loader.iterate())
    assert not multiprocessing.active_children()


def test_case_without_foreground_and_small_case_warn(tmp_path: Path) -> None:
    plan, spec = make_plan(), make_spec()
    empty = (np.ones((1, 20, 20, 20), np.float32), np.zeros((1, 20, 20, 20), np.int8))
    store = write_store(tmp_path, plan, spec, {"empty": empty, "tiny": threshold_case((8, 20, 20), seed=1)})
    loader = TrainingLoader(store, ["empty"], plan, spec, num_workers=0)
    with pytest.warns(UserWarning, match=r"1 training case\(s\) have no foreground voxel at all.*: empty\."):
        batches = list(loader.iterate(num_steps=3))
    with pytest.warns(UserWarning, match=r"smaller than the patch \(16, 16, 16\).*: tiny \(8, 20, 20\)"):
        TrainingLoader(store, ["tiny"], plan, spec).check()
    assert all(b.data.shape == (2, 1, 16, 16, 16) for b in batches)


def test_unlabelled_case_is_rejected(tmp_path: Path) -> None:
    plan, spec = make_plan(), make_spec()
    store = write_store(tmp_path, plan, spec, {"nolabel": (np.ones((1, 20, 20, 20), np.float32), None)})
    with pytest.raises(LoaderError, match="case 'nolabel' in store .* has no segmentation"):
        TrainingLoader(store, ["nolabel"], plan, spec, num_workers=0).check()


def test_bad_loader_arguments(threshold_store: Store) -> None:
    store, plan, spec = threshold_store
    with pytest.raises(ConfigError, match="num_workers must be >= 0"):
        TrainingLoader(store, store.case_ids(), plan, spec, num_workers=-1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="singleton axis"):
        TrainingLoader(store, store.case_ids(), make_plan(patch=(1, 16, 16)), spec)  # type: ignore[arg-type]
    with pytest.raises(LoaderError, match="no case ids given"):
        TrainingLoader(store, [], plan, spec).check()  # type: ignore[arg-type]


def test_two_d_configuration_draws_slices(tmp_path: Path) -> None:
    plan, spec = make_plan(patch=(16, 16)), make_spec()
    store = write_store(tmp_path, plan, spec, {"vol": threshold_case((5, 20, 24), seed=3)})
    batch = TrainingLoader(store, ["vol"], plan, spec, num_workers=0).batch(3)
    assert batch.data.shape == (2, 1, 16, 16)
    assert [t.shape for t in batch.target] == [(2, 1, 16, 16), (2, 1, 8, 8)]


def test_store_built_by_preprocess_dataset(tmp_path: Path) -> None:
    from nnseg.dataset import RawDataset
    from nnseg.preprocessing import preprocess_dataset
    from nnseg.testing import make_synthetic_dataset

    folder = make_synthetic_dataset(tmp_path / "raw", num_cases=2, shape=(28, 32, 32), num_classes=3, seed=0)
    dataset = RawDataset.from_folder(folder)
    plan = make_plan(batch_size=3)
    store = preprocess_dataset(dataset, plan, tmp_path / "pre", num_workers=1, progress=False)
    loader = TrainingLoader(store, store.case_ids(), plan, dataset.spec, num_workers=0)
    batch = next(loader.iterate())
    assert batch.data.shape == (3, 1, 16, 16, 16)
    assert set(batch.case_ids) <= set(dataset.case_ids)
    assert bool((batch.target[0][2] > 0).any())  # the forced sample holds foreground


class DyingFactory(BatchFactory):
    """A factory whose worker process dies without a Python exception at step 1."""

    def __call__(self, step: int) -> Batch:
        if step == 1:
            os._exit(3)
        return super().__call__(step)


def test_dead_worker_raises_instead_of_hanging(threshold_store: Store) -> None:
    store, plan, _ = threshold_store
    factory = DyingFactory(store, store.case_ids(), PatchSampler(plan.patch_size), AugmentationConfig(), seed=0)
    with pytest.raises(LoaderError, match="a data loader worker process died"):
        list(iterate_batches(factory, range(4), num_workers=1))
    assert not multiprocessing.active_children()
