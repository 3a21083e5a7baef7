"""SIGTERM / SIGINT during ``fit``: a checkpoint at the next step boundary, ``TrainingStopped`` (exit 128 + signal),
and a resume that ends bitwise-identical to an uninterrupted run; two trainers of one run folder; a second signal.

The file is also the training script the tests run in subprocesses:
``python test_graceful_stop.py STORE RUN_DIR SLEEP_PER_STEP PROGRESS_FILE``.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).resolve().parent
SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]
ITERATIONS, EPOCHS = 2, 3
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _config(**changes: Any) -> Any:
    from nnseg.training._config import TrainerConfig

    return TrainerConfig(**{"iterations_per_epoch": ITERATIONS, "num_epochs": EPOCHS, "val_iterations_per_epoch": 1,
                            "num_loader_workers": 0, "seed": 5, "final_validation": False, **changes})  # fmt: skip


def _trainer(store_dir: Path, sleep: float = 0.0, progress: Path | None = None, **changes: Any) -> Any:
    from training_data_helpers import make_plan, make_spec

    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._callbacks import Callback, MetricsLog
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer

    class Slow(Callback):
        def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
            if progress is not None:
                progress.write_text(str(step))
            time.sleep(sleep)

    split = Split(("case_0", "case_1", "case_2", "case_3"), ("case_4",), 0)
    return Trainer(make_plan(), PreprocessedStore(store_dir), split, spec=make_spec(), config=_config(**changes),
                   callbacks=[MetricsLog(), Slow()])  # fmt: skip


def _main(store_dir: Path, run_dir: Path, sleep: float, progress: Path) -> int:
    from nnseg.errors import NnsegError, TrainingStopped

    logging.basicConfig(level=logging.WARNING)
    try:
        _trainer(store_dir, sleep, progress).fit(run_dir)
    except TrainingStopped as err:  # as `nnseg train` does
        print(f"TrainingStopped: {err}", file=sys.stderr)
        return err.exit_code
    except NnsegError as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def _run(store_dir: Path, run_dir: Path, sleep: float, progress: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(store_dir), str(run_dir), str(sleep),
                             str(progress)], cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _wait_for_step(process: subprocess.Popen[bytes], progress: Path, step: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if progress.is_file() and progress.read_text().strip() == str(step):
            return
        time.sleep(0.02)
    pytest.fail(
        f"the training subprocess did not reach step {step} ({process.poll()}): "
        f"{process.communicate()[1].decode()[-2000:] if process.poll() is not None else 'still running'}"
    )


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training_data_helpers import make_plan, make_spec, threshold_case, write_store

    root = tmp_path_factory.mktemp("store")
    write_store(root, make_plan(), make_spec(), {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)})
    return root


@pytest.fixture(scope="module")
def straight(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (in a subprocess too, so both runs start from a fresh interpreter)."""
    run_dir = tmp_path_factory.mktemp("straight")
    process = _run(store_dir, run_dir, 0.0, run_dir.parent / f"{run_dir.name}.progress")
    assert process.wait(180) == 0, process.communicate()[1].decode()[-2000:]
    return run_dir


def _assert_same_run(a_dir: Path, b_dir: Path) -> None:
    a = torch.load(a_dir / "checkpoint_final.pt", weights_only=True)
    b = torch.load(b_dir / "checkpoint_final.pt", weights_only=True)
    assert a["train_state"]["step"] == b["train_state"]["step"] == ITERATIONS * EPOCHS
    assert a["train_state"]["ema_pseudo_dice"] == b["train_state"]["ema_pseudo_dice"]
    for name, tensor in a["network_weights"].items():
        assert torch.equal(tensor, b["network_weights"][name]), name
    metrics = [[{k: v for k, v in json.loads(line).items() if k != "seconds_per_step"}
                for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a_dir, b_dir)]  # fmt: skip
    assert metrics[0] == metrics[1]  # the stopped epoch logs the same loss: its partial sum was checkpointed
    assert len(metrics[0]) == EPOCHS


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_at_the_next_step_with_a_checkpoint_and_resumes_bitwise(
    signum: int, store_dir: Path, straight: Path, tmp_path: Path
) -> None:
    run_dir, progress = tmp_path / "run", tmp_path / "progress"
    process = _run(store_dir, run_dir, 1.0, progress)
    _wait_for_step(process, progress, ITERATIONS + 1)  # in the middle of epoch 1
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err.decode()[-2000:]
    name = signal.Signals(signum).name
    assert f"TrainingStopped: training in {run_dir} stopped by {name} after step {ITERATIONS + 1} of " in err.decode()
    latest = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert latest["train_state"]["step"] == ITERATIONS + 1
    assert latest["extra"]["epoch_loss_count"] == 1
    assert not (run_dir / "checkpoint_final.pt").exists()
    assert not (run_dir / ".train.lock").exists()  # released on the way out
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    resumed = _run(store_dir, run_dir, 0.0, progress)
    assert resumed.wait(180) == 0, resumed.communicate()[1].decode()[-2000:]
    _assert_same_run(straight, run_dir)


def test_a_second_signal_stops_at_once(store_dir: Path, tmp_path: Path) -> None:
    run_dir, progress = tmp_path / "run", tmp_path / "progress"
    process = _run(store_dir, run_dir, 30.0, progress)
    _wait_for_step(process, progress, 1)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 20  # not after the 30 s step
    assert process.returncode not in (0, 143)
    assert "KeyboardInterrupt" in err.decode()
    assert not (run_dir / "checkpoint_latest.pt").exists()  # no step boundary was reached: nothing written


def test_a_second_trainer_of_the_same_folder_is_refused_naming_the_first(store_dir: Path, tmp_path: Path) -> None:
    from nnseg.errors import LockError

    run_dir, progress = tmp_path / "run", tmp_path / "progress"
    first = _run(store_dir, run_dir, 30.0, progress)
    try:
        _wait_for_step(first, progress, 1)
        with pytest.raises(
            LockError,
            match=rf"training in run folder {run_dir} is already running: pid {first.pid} "
            r"on host .+, since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d holds .+\.train\.lock",
        ):
            _trainer(store_dir).fit(run_dir)
    finally:
        first.kill()
        first.wait(30)
    assert (run_dir / ".train.lock").is_file()  # SIGKILL leaves the lock behind...
    dead = json.loads((run_dir / ".train.lock").read_text())["pid"]
    assert dead == first.pid


def test_the_lock_of_a_dead_trainer_is_taken_over_with_a_note(
    store_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    (run_dir / ".train.lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(),
                                                     "started": time.time(), "what": "training"}))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="nnseg._lock"):
        final = _trainer(store_dir, num_epochs=1, iterations_per_epoch=1).fit(run_dir)
    assert final.is_file()
    assert f"its owner (pid {gone.pid} on host" in caplog.text
    assert "is no longer running" in caplog.text
    assert not (run_dir / ".train.lock").exists()


if __name__ == "__main__":
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # the helpers and the suite-wide fixtures they import
    sys.exit(_main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])))
