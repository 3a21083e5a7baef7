"""Kill-and-resume: SIGKILL a preprocessing process at many moments, resume, get the uninterrupted bytes.

The child process counts the store's atomic writes (1: ``store.json``; then per case: data, seg, locations,
properties marker) and, at the chosen write, parks itself after the rename, before the rename, or with the
temporary file cut in half; the test then SIGKILLs it, resumes in this process and compares every byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnseg.dataset import RawDataset
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import ConfigurationPlan, Planner
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset
from nnseg.testing import make_synthetic_dataset

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

STATS = IntensityStats(mean=100.0, median=100.0, std=50.0, min=0.0, max=300.0, percentile_99_5=250.0,
                       percentile_00_5=10.0)  # fmt: skip
CHILD = r"""
import sys, time
from pathlib import Path
import json
import nnseg._atomic
import nnseg.preprocessing._arrays
from nnseg.dataset import RawDataset
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import preprocess_dataset

raw, plan_path, store, at, phase, ready = sys.argv[1:]
real = nnseg._atomic.atomic_write
count = [0]

def park():
    Path(ready).write_text("parked")
    time.sleep(120)

def counting(path, write, **options):
    count[0] += 1
    if count[0] != int(at):
        return real(path, write, **options)
    if phase == "after":
        real(path, write, **options)
        park()
    def interrupted(tmp):
        write(tmp)
        if phase == "mid":
            with open(tmp, "r+b") as handle:
                handle.truncate(tmp.stat().st_size // 2)
        park()
    real(path, interrupted, **options)

nnseg._atomic.atomic_write = counting
nnseg.preprocessing._arrays.atomic_write = counting
plan = ConfigurationPlan.from_json(json.loads(Path(plan_path).read_text()))
preprocess_dataset(RawDataset.from_folder(raw), plan, store, num_workers=1, progress=False)
Path(ready).write_text("finished")
"""


def store_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawDataset, ConfigurationPlan, Path, dict[str, bytes]]:
    base = tmp_path_factory.mktemp("kill")
    dataset = RawDataset.from_folder(make_synthetic_dataset(base / "raw", num_cases=5, shape=(16, 24, 24)))
    fingerprint = Fingerprint(((1.0,) * 3,) * 5, ((16, 24, 24),) * 5, (STATS,), 1.0)
    plan = Planner().plan(fingerprint, dataset.spec)["3d_fullres"]
    plan_path = base / "plan.json"
    plan_path.write_text(json.dumps(plan.to_json(standalone=True)))
    preprocess_dataset(dataset, plan, base / "reference", progress=False)
    return dataset, plan, plan_path, store_bytes(base / "reference")


def kill_at(at: int, phase: str, dataset: RawDataset, plan_path: Path, store: Path) -> None:
    """Run preprocessing in a child process and SIGKILL it when it parks at atomic write ``at``."""
    ready = store.parent / "ready"
    args = [sys.executable, "-c", CHILD, str(dataset.root), str(plan_path), str(store), str(at), phase, str(ready)]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"child never parked: {child.stderr.read().decode() if child.stderr else ''}")
            time.sleep(0.02)
        assert ready.read_text() == "parked"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL


# (atomic write number, phase, cases complete when killed, leftover temporary files expected)
MOMENTS = [
    (1, "after", 0, False),  # store.json written, no case started
    (2, "mid", 0, True),  # case 0's data file half written under its temporary name
    (9, "after", 2, False),  # cases 0 and 1 complete
    (11, "before", 2, True),  # case 2: data in place, seg written but not renamed
    (12, "after", 2, False),  # case 2: data, seg, locations in place, no marker
    (13, "mid", 2, True),  # case 2's marker half written
    (17, "before", 3, True),  # case 3's marker written but not renamed
    (21, "after", 5, False),  # every case complete, killed before returning
]


@pytest.mark.parametrize(("at", "phase", "done", "leftovers"), MOMENTS)
def test_killed_run_resumes_to_identical_bytes(
    setup: tuple[RawDataset, ConfigurationPlan, Path, dict[str, bytes]], tmp_path: Path,
    at: int, phase: str, done: int, leftovers: bool,
) -> None:  # fmt: skip
    dataset, plan, plan_path, reference = setup
    store_dir = tmp_path / "store"
    kill_at(at, phase, dataset, plan_path, store_dir)
    status = PreprocessedStore(store_dir).status(dataset.case_ids)
    assert len(status.done) == done
    assert any(p.name.endswith(".tmp") for p in store_dir.iterdir()) == leftovers
    preprocess_dataset(dataset, plan, store_dir, progress=False)
    assert store_bytes(store_dir) == reference


def test_truncated_and_corrupt_case_files_are_redone(
    setup: tuple[RawDataset, ConfigurationPlan, Path, dict[str, bytes]], tmp_path: Path
) -> None:
    dataset, plan, _, reference = setup
    store = preprocess_dataset(dataset, plan, tmp_path / "s", progress=False)
    with store.path("case_001", "seg").open("r+b") as handle:  # a power cut without data journaling
        handle.truncate(64)
    store.path("case_003", "properties").write_text('{"case_id": "case_0')  # a corrupt marker
    store.path("case_004", "class_locations").unlink()  # a lost piece
    status = store.status(dataset.case_ids)
    assert status.stale == ("case_001", "case_003", "case_004")
    assert status.done == ("case_000", "case_002")
    preprocess_dataset(dataset, plan, tmp_path / "s", progress=False)
    assert store_bytes(tmp_path / "s") == reference
