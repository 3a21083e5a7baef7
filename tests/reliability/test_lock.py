"""Concurrent runs: the second process refuses, naming the first; a dead owner's lock is taken over."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nnseg._lock import LockOwner, WorkLock
from nnseg.dataset import RawDataset
from nnseg.errors import LockError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset
from nnseg.sharding import Shard

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nnseg._lock import WorkLock
    with WorkLock(sys.argv[1], "preprocessing part 1 of 1 of store S"):
        Path(sys.argv[2]).write_text("held")
        time.sleep(60)
""")


def _start_holder(tmp_path: Path, lock_path: Path) -> subprocess.Popen[bytes]:
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path), str(ready)], env=env)
    for _ in range(300):
        if ready.exists():
            return child
        time.sleep(0.05)
    child.kill()
    raise AssertionError("the lock holder never started")


def test_second_process_refuses_naming_the_first(tmp_path: Path) -> None:
    lock_path = tmp_path / "work.lock"
    child = _start_holder(tmp_path, lock_path)
    try:
        with pytest.raises(
            LockError,
            match=rf"^preprocessing part 1 of 1 of store S is already running: pid {child.pid} "
            rf"on host {socket.gethostname()}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d holds {lock_path}",
        ):
            WorkLock(lock_path, "preprocessing part 1 of 1 of store S").acquire()
    finally:
        child.kill()
        child.wait()
    # the holder was killed: its lock is now taken over
    with WorkLock(lock_path, "again") as lock:
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        assert lock.path == lock_path
    assert not lock_path.exists()


def test_dead_owner_is_taken_over_with_a_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock_path = tmp_path / "w.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    lock_path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": 0.0,
                                     "what": "old run"}))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="nnseg._lock"), WorkLock(lock_path, "new run"):
        assert json.loads(lock_path.read_text())["what"] == "new run"
    assert f"taking over {lock_path}: its owner (pid {int(dead.stdout)} on host" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    lock_path = tmp_path / "w.lock"
    owner = LockOwner(1, "some-other-host", time.time(), "x")
    lock_path.write_text(json.dumps({"pid": owner.pid, "host": owner.host, "started": owner.started, "what": "x"}))
    with pytest.raises(LockError, match=r"pid 1 on host some-other-host, .* delete the lock file and run again"):
        WorkLock(lock_path, "work").acquire()
    assert not owner.is_dead()


def test_preprocessing_the_same_shard_twice_is_refused(tiny: tuple[RawDataset, ConfigurationPlan],
                                                       tmp_path: Path) -> None:  # fmt: skip
    dataset, plan = tiny
    store = tmp_path / "store"
    preprocess_dataset(dataset, plan, store, shard=Shard(0, 2), progress=False)  # creates the store
    child = _start_holder(tmp_path, store / ".preprocess.part_0_of_2.lock")
    try:
        with pytest.raises(LockError, match=rf"is already running: pid {child.pid} on host"):
            preprocess_dataset(dataset, plan, store, shard=Shard(0, 2), progress=False)
        preprocess_dataset(dataset, plan, store, shard=Shard(1, 2), progress=False)  # another shard may run
    finally:
        child.kill()
        child.wait()
    assert PreprocessedStore(store).status(dataset.case_ids).is_complete
