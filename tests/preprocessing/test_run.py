"""``preprocess_dataset``: resume, sharding, shared stores, refusal of foreign stores, failure reporting."""

from __future__ import annotations

import dataclasses
import errno
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from nnseg.dataset import RawDataset
from nnseg.errors import ConfigError, PreprocessingError, StoreError, WriteError
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import ConfigurationPlan, Planner
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.preprocessing._run import run_bounded
from nnseg.sharding import Shard
from nnseg.testing import make_synthetic_dataset

STATS = IntensityStats(mean=100.0, median=100.0, std=50.0, min=0.0, max=300.0, percentile_99_5=250.0,
                       percentile_00_5=10.0)  # fmt: skip


def tiny_plan(dataset: RawDataset, spacing: float = 1.0) -> ConfigurationPlan:
    """nnseg's 3d_fullres plan for a tiny dataset (a made-up fingerprint: fast and good enough here)."""
    n = len(dataset.cases)
    fingerprint = Fingerprint(((spacing,) * 3,) * n, ((16, 24, 24),) * n, (STATS,), 1.0)
    return Planner().plan(fingerprint, dataset.spec)["3d_fullres"]


def store_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> RawDataset:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("raw"), num_cases=5, shape=(16, 24, 24))
    return RawDataset.from_folder(root)


@pytest.fixture(scope="module")
def reference(dataset: RawDataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("ref") / "store"
    preprocess_dataset(dataset, tiny_plan(dataset), root, num_workers=1, progress=False)
    return store_bytes(root)


def test_full_run_matches_in_memory_preprocessing(dataset: RawDataset, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    plan = tiny_plan(dataset)
    store = preprocess_dataset(dataset, plan, tmp_path / "s", num_workers=1, progress=True)
    assert "preprocess 3d_fullres" in capsys.readouterr().err  # the progress bar
    assert store.status(dataset.case_ids).done == dataset.case_ids
    expected = Preprocessor(plan, dataset.spec).preprocess_case(dataset.cases[2])
    got = store.read_case(dataset.case_ids[2])
    np.testing.assert_array_equal(got.data, expected.data)
    assert got.seg is not None
    assert expected.seg is not None
    np.testing.assert_array_equal(got.seg, expected.seg)
    assert got.properties == expected.properties


def test_rerun_skips_complete_cases(dataset: RawDataset, reference: dict[str, bytes], tmp_path: Path) -> None:
    plan = tiny_plan(dataset)
    preprocess_dataset(dataset, plan, tmp_path / "s", num_workers=1, progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()}
    preprocess_dataset(dataset, plan, tmp_path / "s", num_workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()} == stamps
    assert store_bytes(tmp_path / "s") == reference


def test_two_workers_give_the_same_bytes(dataset: RawDataset, reference: dict[str, bytes], tmp_path: Path) -> None:
    preprocess_dataset(dataset, tiny_plan(dataset), tmp_path / "s", num_workers=2, progress=False)
    assert store_bytes(tmp_path / "s") == reference


def test_shards_add_up_to_the_full_store(dataset: RawDataset, reference: dict[str, bytes], tmp_path: Path) -> None:
    plan = tiny_plan(dataset)
    for index in (1, 0):
        store = preprocess_dataset(dataset, plan, tmp_path / "s", shard=Shard(index, 2), progress=False)
        assert set(store.status(Shard(index, 2).select(dataset.case_ids)).done) <= set(dataset.case_ids)
    assert store_bytes(tmp_path / "s") == reference


def test_plans_with_same_preprocessing_share_a_store(dataset: RawDataset, tmp_path: Path) -> None:
    plan = tiny_plan(dataset)
    preprocess_dataset(dataset, plan, tmp_path / "s", progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()}
    resenc = dataclasses.replace(plan, plans_name="nnUNetResEncUNetLPlans", batch_size=3)
    preprocess_dataset(dataset, resenc, tmp_path / "s", progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s").iterdir()} == stamps


def test_foreign_store_is_refused_unless_overwrite(dataset: RawDataset, reference: dict[str, bytes],
                                                   tmp_path: Path) -> None:  # fmt: skip
    plan = tiny_plan(dataset)
    preprocess_dataset(dataset, tiny_plan(dataset, spacing=2.0), tmp_path / "s", progress=False)
    foreign = store_bytes(tmp_path / "s")
    with pytest.raises(StoreError, match=r"preprocessed store .*s was built for preprocessing \w+, got \w+\. Use a "
                                         r"new store folder or pass overwrite=True.*differs in: spacing"):  # fmt: skip
        preprocess_dataset(dataset, plan, tmp_path / "s", progress=False)
    assert store_bytes(tmp_path / "s") == foreign  # nothing touched
    preprocess_dataset(dataset, plan, tmp_path / "s", overwrite=True, progress=False)
    assert store_bytes(tmp_path / "s") == reference


def test_unreadable_case_is_reported_and_others_finish(dataset: RawDataset, tmp_path: Path) -> None:
    raw = make_synthetic_dataset(tmp_path / "raw", num_cases=4, shape=(16, 24, 24))
    broken = RawDataset.from_folder(raw)
    broken.cases[1].image_paths[0].write_bytes(b"this is not a nifti file")
    with pytest.raises(PreprocessingError, match=r"(?s)preprocessing failed for 1 of 4 case\(s\).*\n  - case_001: ImageIOError: cannot read .*"
                                                 r"The other 3 case\(s\) are complete and stay") as info:  # fmt: skip
        preprocess_dataset(broken, tiny_plan(broken), tmp_path / "s", progress=False)
    assert list(info.value.failures) == ["case_001"]
    status = PreprocessedStore(tmp_path / "s").status(broken.case_ids)
    assert status.done == ("case_000", "case_002", "case_003")
    assert status.missing == ("case_001",)


def test_disk_full_stops_and_keeps_finished_cases(dataset: RawDataset, reference: dict[str, bytes], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import nnseg.preprocessing._store as store_module

    real = store_module.write_array
    calls = []

    def filling_disk(path: Path, *args: object, **kwargs: object) -> int:
        calls.append(path)
        if len(calls) == 6:  # case 2's data file (two arrays per case)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store_module, "write_array", filling_disk)
    with pytest.raises(
        PreprocessingError, match=r"^the disk holding store .* is full; free space and run again"
    ) as info:
        preprocess_dataset(dataset, tiny_plan(dataset), tmp_path / "s", progress=False)
    assert info.value.failures["case_002"].startswith("the disk holding the store is full (WriteError: cannot write ")
    assert "[Errno 28] No space left on device" in info.value.failures["case_002"]
    assert isinstance(info.value, WriteError)
    assert info.value.errno == errno.ENOSPC
    assert info.value.failures["case_004"].startswith("not started")
    assert len(calls) == 6  # nothing more was attempted
    status = PreprocessedStore(tmp_path / "s").status(dataset.case_ids)
    assert status.done == ("case_000", "case_001")
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(store_module, "write_array", real)
    preprocess_dataset(dataset, tiny_plan(dataset), tmp_path / "s", progress=False)
    assert store_bytes(tmp_path / "s") == reference


def test_bad_worker_count(dataset: RawDataset, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"preprocess_dataset: num_workers must be an integer >= 0; got -1\. Set num_workers=0 or more",
    ):
        preprocess_dataset(dataset, tiny_plan(dataset), tmp_path / "s", num_workers=-1)
    assert not (tmp_path / "s").exists()


def test_run_bounded_keeps_at_most_max_in_flight() -> None:
    lock = threading.Lock()
    running, peak = [0], [0]

    def job(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return i

    with ThreadPoolExecutor(8) as pool:

        def submit(i: int) -> Future[int]:
            return pool.submit(job, i)

        queue = deque(range(40))
        done = [item for item, future in run_bounded(submit, queue, max_in_flight=3) if future.result() == item]
    assert sorted(done) == list(range(40))
    assert not queue
    assert 1 <= peak[0] <= 3
