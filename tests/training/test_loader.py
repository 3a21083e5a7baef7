"""Loaders: determinism per step across worker counts and restarts, oversampling, validation, bad input."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError, LoaderError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._store import PreprocessedStore
from nnseg.training import AugmentationConfig, Batch, PatchSampler, TrainingLoader, ValidationLoader
from nnseg.training._batches import BatchFactory
from nnseg.training._loader import iterate_batches

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


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")
def test_same_batches_with_0_1_4_workers_and_after_restart(loader_args: dict[str, object]) -> None:
    runs = {}
    for workers in (0, 1, 4):
        loader = TrainingLoader(**loader_args, num_workers=workers)  # type: ignore[arg-type]
        runs[workers] = list(loader.iterate(start_step=0, num_steps=4))
    resumed = list(TrainingLoader(**loader_args, num_workers=2).iterate(start_step=2, num_steps=2))  # type: ignore[arg-type]
    assert [b.step for b in runs[0]] == [0, 1, 2, 3]
    for workers in (1, 4):
        assert len(runs[workers]) == 4
        assert all(same(a, b) for a, b in zip(runs[0], runs[workers]))
    assert len(resumed) == 2
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


def test_validation_batches_are_a_pure_function_of_seed_and_epoch(threshold_store: Store) -> None:
    store, plan, spec = threshold_store
    args = (store, store.case_ids(), plan, spec)
    replay = ValidationLoader(*args, num_batches=2, num_workers=0, seed=4)  # type: ignore[arg-type]
    assert all(same(a, b) for a, b in zip(replay.batches(0), replay.batches(5), strict=True))  # today's default
    fresh = ValidationLoader(*args, num_batches=2, num_workers=0, seed=4, resample_each_epoch=True)  # type: ignore[arg-type]
    again = ValidationLoader(*args, num_batches=2, num_workers=0, seed=4, resample_each_epoch=True)  # type: ignore[arg-type]
    epoch_1, epoch_2 = list(fresh.batches(1)), list(fresh.batches(2))
    assert [b.step for b in epoch_1] == [2, 3]
    assert not any(torch.equal(a.data, b.data) for a, b in zip(epoch_1, epoch_2, strict=True))
    assert all(same(a, b) for a, b in zip(epoch_1, again.batches(1), strict=True))  # repeats for the same seed/epoch
    assert all(same(a, b) for a, b in zip(fresh, replay, strict=True))  # iterating is epoch 0
    with pytest.raises(ConfigError, match=r"ValidationLoader: epoch must be an integer >= 0; got -1"):
        next(fresh.batches(-1))
    with pytest.raises(ConfigError, match=r"ValidationLoader: resample_each_epoch must be"):
        ValidationLoader(*args, resample_each_epoch="yes")  # type: ignore[arg-type]


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
    data_path = store.path("broken_case", "data")  # undecodable bytes of the recorded size: found when read
    data_path.write_bytes(b"\0" * data_path.stat().st_size)
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


def test_spawned_workers_give_the_same_batches(loader_args: dict[str, object]) -> None:
    """The start method of macOS and Windows: the factory is pickled into fresh interpreters."""
    spawned = TrainingLoader(**loader_args, num_workers=1, multiprocessing_context="spawn")  # type: ignore[arg-type]
    batches = list(spawned.iterate(start_step=5, num_steps=2))
    assert all(same(b, spawned.batch(5 + i)) for i, b in enumerate(batches))
    assert not multiprocessing.active_children()


def train_until_interrupted(loader: TrainingLoader) -> None:
    """A training loop interrupted (Ctrl-C) at step 1."""
    for batch in loader.iterate():
        assert multiprocessing.active_children()
        if batch.step == 1:
            raise KeyboardInterrupt


def test_keyboard_interrupt_in_the_loop_stops_the_workers(loader_args: dict[str, object]) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_until_interrupted(TrainingLoader(**loader_args, num_workers=2))  # type: ignore[arg-type]
    assert not multiprocessing.active_children()


CTRL_C_SCRIPT = """
import multiprocessing, sys, time
from pathlib import Path
sys.path[:0] = sys.argv[2:]
from training_data_helpers import make_plan, make_spec, threshold_case, write_store
from nnseg.training import TrainingLoader

plan, spec = make_plan(), make_spec()
store = write_store(Path(sys.argv[1]), plan, spec, {"a": threshold_case((20, 20, 20), seed=0)})
for batch in TrainingLoader(store, ["a"], plan, spec, num_workers=2).iterate():
    if batch.step == 0:
        print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(0.01)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir() or os.name != "posix", reason="needs POSIX signals and /proc")
@pytest.mark.parametrize("target", ["group", "main"])
def test_ctrl_c_ends_the_run_and_leaves_no_worker(tmp_path: Path, target: str) -> None:
    """A real SIGINT: to the process group as a terminal's Ctrl-C, or to the main process only (``kill -INT``)."""
    helpers = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
    process = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path / "store"), *helpers],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        assert process.stdout is not None
        workers = [int(pid) for pid in process.stdout.readline().split()]
        assert len(workers) == 2, process.stderr.read() if process.stderr else ""
        (os.killpg if target == "group" else os.kill)(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)  # a hang fails here instead of blocking the suite
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr
    assert not [pid for pid in workers if _alive(pid)]  # no orphaned worker


def test_negative_seed_or_step_is_rejected(loader_args: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0; got -1\. Set seed=0 or more"):
        TrainingLoader(**{**loader_args, "seed": -1}, num_workers=0)  # type: ignore[arg-type]
    loader = TrainingLoader(**loader_args, num_workers=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"step must be an integer >= 0; got -3\. Set step=0 or more"):
        loader.batch(-3)
    with pytest.raises(ConfigError, match="start_step and num_steps must be >= 0; got -1 and None"):
        loader.iterate(start_step=-1)


def test_unknown_case_id_is_named(threshold_store: Store) -> None:
    store, plan, spec = threshold_store
    with pytest.raises(LoaderError, match="case 'not_there' cannot be used for training"):
        TrainingLoader(store, ["case_0", "not_there"], plan, spec, num_workers=0).check()  # type: ignore[arg-type]


def test_validation_does_not_mask_but_training_does(tmp_path: Path) -> None:
    """nnU-Net masks use_mask_for_norm channels (0 where the label is -1) in training only."""
    plan, spec = make_plan(use_mask=(True,)), make_spec()
    data, seg = threshold_case((16, 16, 16), seed=4)  # exactly the patch: every crop is the whole case
    seg[0, :4] = -1  # outside the nonzero mask; the data there is deliberately not 0
    store = write_store(tmp_path, plan, spec, {"masked": (data, seg)})
    val = ValidationLoader(store, ["masked"], plan, spec, num_batches=1, oversample_foreground_percent=0.0,
                           num_workers=0)  # type: ignore[arg-type]  # fmt: skip
    assert val.factory.augmentation.mask_channels == ()
    assert torch.equal(next(iter(val)).data[0], torch.from_numpy(data))  # unmasked, as nnU-Net's validation
    train = TrainingLoader(store, ["masked"], plan, spec, num_workers=0)  # type: ignore[arg-type]
    assert train.augmentation.mask_channels == (0,)
    masked = BatchFactory(store, ["masked"], val.sampler, train.augmentation, seed=0, augment=False)(0).data[0, 0]
    assert bool((masked[:4] == 0).all())
    assert torch.equal(masked[4:], torch.from_numpy(data[0, 4:]))


def test_cases_with_different_channel_counts_are_named(tmp_path: Path) -> None:
    plan, spec = make_plan(), make_spec()
    one, seg = threshold_case((16, 16, 16), seed=0)
    store = write_store(tmp_path, plan, spec, {"one": (one, seg), "two": threshold_case((16, 16, 16), 1, channels=2)})
    factory = BatchFactory(store, ["one", "two"], PatchSampler(plan.patch_size, batch_size=8), AugmentationConfig(),
                           seed=0, augment=False)  # fmt: skip
    expected = r"step 0: the samples do not stack.*one \(1, 16, 16, 16\).*two \(2, 16, 16, 16\)"
    with pytest.raises(LoaderError, match=expected):
        factory(0)
