"""The per-case cache: kill and resume, shards and their merge, refusal of other settings, damage."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import nnseg.fingerprint._extract as extract_module
from nnseg.dataset import RawDataset
from nnseg.errors import ConfigError, FingerprintError
from nnseg.fingerprint import Fingerprint, extract_fingerprint, fingerprint_cache_status
from nnseg.fingerprint._extract import _CaseTask
from nnseg.fingerprint._fingerprint import CaseFingerprint
from nnseg.sharding import Shard

NUM_SAMPLES = 300

SLOW_EXTRACTION = """
import sys, time
import nnseg.fingerprint._extract as extract_module
from nnseg.dataset import RawDataset

original = extract_module._fingerprint_files

def slow(task, out=None):
    time.sleep(0.4)
    return original(task, out)

extract_module._fingerprint_files = slow
extract_module.extract_fingerprint(RawDataset.from_folder(sys.argv[1]), cache_dir=sys.argv[2], num_samples=int(sys.argv[3]))
"""


@pytest.fixture
def dataset(synthetic_mr: Path) -> RawDataset:
    """The six-case synthetic MR dataset."""
    return RawDataset.from_folder(synthetic_mr)


@pytest.fixture
def whole(dataset: RawDataset) -> Fingerprint:
    """The fingerprint of an uninterrupted run without cache."""
    return extract_fingerprint(dataset, num_samples=NUM_SAMPLES)


def _count_computed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the case ids actually computed (read from disk) from now on."""
    computed: list[str] = []
    original = extract_module._fingerprint_files

    def counting(task: _CaseTask, out: Any = None) -> CaseFingerprint:
        computed.append(task.case.case_id)
        return original(task, out)

    monkeypatch.setattr(extract_module, "_fingerprint_files", counting)
    return computed


def test_killed_run_resumes_and_equals_an_uninterrupted_run(
    dataset: RawDataset, whole: Fingerprint, synthetic_mr: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", SLOW_EXTRACTION, str(synthetic_mr), str(cache), str(NUM_SAMPLES)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while len(list((cache / "cases").glob("*.json"))) < 2:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the extraction subprocess cached nothing within 60 s"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    status = fingerprint_cache_status(dataset, cache, num_samples=NUM_SAMPLES)
    assert 2 <= len(status.done) < len(dataset)
    computed = _count_computed(monkeypatch)
    resumed = extract_fingerprint(dataset, cache_dir=cache, num_samples=NUM_SAMPLES)
    assert sorted(computed) == list(status.missing)
    assert resumed.to_json() == whole.to_json()


def test_cached_run_equals_in_memory_run_and_is_not_recomputed(
    dataset: RawDataset, whole: Fingerprint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES, num_workers=2)
    assert first.to_json() == whole.to_json()
    computed = _count_computed(monkeypatch)
    again = extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)
    assert computed == []
    assert again.to_json() == whole.to_json()


def test_shards_into_one_cache_then_assemble_equal_the_whole(
    dataset: RawDataset, whole: Fingerprint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert extract_fingerprint(dataset, cache_dir=tmp_path, shard=Shard(0, 2), num_samples=NUM_SAMPLES) is None
    status = fingerprint_cache_status(dataset, tmp_path, num_samples=NUM_SAMPLES)
    assert status.done == tuple(Shard(0, 2).select(dataset.case_ids))
    assert status.missing_in(Shard(1, 2)) == status.missing
    assert status.missing_in(Shard(0, 2)) == ()
    extract_fingerprint(dataset, cache_dir=tmp_path, shard=Shard(1, 2), num_samples=NUM_SAMPLES)
    assert fingerprint_cache_status(dataset, tmp_path, num_samples=NUM_SAMPLES).is_complete
    computed = _count_computed(monkeypatch)
    merged = extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)
    assert computed == []
    assert merged.to_json() == whole.to_json()


def test_shards_in_separate_caches_merged_by_copying_equal_the_whole(
    dataset: RawDataset, whole: Fingerprint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [tmp_path / "machine0", tmp_path / "machine1", tmp_path / "machine2"]
    for index, part in enumerate(parts):
        extract_fingerprint(dataset, cache_dir=part, shard=Shard(index, 3), num_samples=NUM_SAMPLES)
    for part in parts[1:]:
        for entry in (part / "cases").iterdir():
            shutil.copy2(entry, parts[0] / "cases" / entry.name)
    computed = _count_computed(monkeypatch)
    merged = extract_fingerprint(dataset, cache_dir=parts[0], num_samples=NUM_SAMPLES)
    assert computed == []
    assert merged.to_json() == whole.to_json()


def test_cache_from_other_settings_is_refused(dataset: RawDataset, tmp_path: Path) -> None:
    extract_fingerprint(dataset, cache_dir=tmp_path, shard=Shard(0, 3), num_samples=NUM_SAMPLES)
    with pytest.raises(
        FingerprintError, match=r"was made with other settings .*num_samples: cache has 300, this run 200"
    ):
        extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=200)
    with pytest.raises(FingerprintError, match=r"seed: cache has 1234, this run 7.*Delete the folder"):
        fingerprint_cache_status(dataset, tmp_path, num_samples=NUM_SAMPLES, seed=7)


def test_unreadable_cache_json_is_refused(dataset: RawDataset, tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text("{not json")
    with pytest.raises(FingerprintError, match=r"cannot read cache.json .*delete the folder"):
        extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)


def test_changed_input_file_is_recomputed(dataset: RawDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)
    changed = dataset.cases[1]
    stat = changed.image_paths[0].stat()
    try:
        os.utime(changed.image_paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        status = fingerprint_cache_status(dataset, tmp_path, num_samples=NUM_SAMPLES)
        assert status.missing == (changed.case_id,)
        computed = _count_computed(monkeypatch)
        extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)
        assert computed == [changed.case_id]
    finally:  # the dataset is shared by the session
        os.utime(changed.image_paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_damaged_samples_file_names_the_files_to_delete(dataset: RawDataset, tmp_path: Path) -> None:
    extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)
    npy = tmp_path / "cases" / f"{dataset.case_ids[0]}.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    with pytest.raises(FingerprintError, match=r"is damaged .*delete .*\.json and .*\.npy and run again"):
        extract_fingerprint(dataset, cache_dir=tmp_path, num_samples=NUM_SAMPLES)


def test_status_of_missing_cache_lists_every_case(dataset: RawDataset, tmp_path: Path) -> None:
    status = fingerprint_cache_status(dataset, tmp_path / "nothing")
    assert status.done == ()
    assert status.missing == dataset.case_ids
    assert not (tmp_path / "nothing").exists()


def test_shard_without_cache_dir_is_refused(dataset: RawDataset) -> None:
    with pytest.raises(ConfigError, match=r"shard=part 0 of 2 needs a cache_dir"):
        extract_fingerprint(dataset, shard=Shard(0, 2), num_samples=NUM_SAMPLES)
