"""A training process killed with SIGKILL and resumed ends with the same weights as an uninterrupted one.

The file is also the training script the test runs in subprocesses:
``python test_kill_resume.py STORE RUN_DIR SLEEP_PER_STEP``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).resolve().parent
SHAPES = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30), (20, 20, 20)]
ITERATIONS, EPOCHS = 2, 4


def _config() -> Any:
    from nnseg.training._config import TrainerConfig

    return TrainerConfig(iterations_per_epoch=ITERATIONS, num_epochs=EPOCHS, val_iterations_per_epoch=1,
                         num_loader_workers=0, seed=5, final_validation=False)  # fmt: skip


def _train(store_dir: Path, run_dir: Path, sleep: float) -> None:
    """The subprocess: train the tiny plan on the store, sleeping after each step (so it can be killed)."""
    from training_data_helpers import make_plan, make_spec

    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._callbacks import Callback, MetricsLog
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer

    class Slow(Callback):
        def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
            time.sleep(sleep)

    split = Split(("case_0", "case_1", "case_2", "case_3"), ("case_4",), 0)
    trainer = Trainer(make_plan(), PreprocessedStore(store_dir), split, spec=make_spec(), config=_config(),
                      callbacks=[MetricsLog(), Slow()])  # fmt: skip
    trainer.fit(run_dir)


def _run(store_dir: Path, run_dir: Path, sleep: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(store_dir), str(run_dir), str(sleep)],
                            cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def _checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["train_state"]["step"])
    except Exception:  # not there yet (files appear atomically, so never half-written)
        return -1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkilled_run_resumes_to_bitwise_identical_weights(tmp_path: Path) -> None:
    from training_data_helpers import make_plan, make_spec, threshold_case, write_store

    store_dir = tmp_path / "store"
    write_store(
        store_dir, make_plan(), make_spec(), {f"case_{i}": threshold_case(s, seed=i) for i, s in enumerate(SHAPES)}
    )
    straight = _run(store_dir, tmp_path / "straight", 0.0)
    killed = _run(store_dir, tmp_path / "killed", 0.5)
    latest = tmp_path / "killed" / "checkpoint_latest.pt"
    deadline = time.monotonic() + 60
    while _checkpoint_step(latest) < ITERATIONS * 2 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if killed.poll() is not None:  # it must still be running: a crash here is a broken script, not a resume bug
        pytest.fail(
            f"the training subprocess exited early ({killed.returncode}): {killed.communicate()[1].decode()[-2000:]}"
        )
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait(10) == -signal.SIGKILL
    assert not (tmp_path / "killed" / "checkpoint_final.pt").exists()
    assert ITERATIONS * 2 <= _checkpoint_step(latest) < ITERATIONS * EPOCHS
    resumed = _run(store_dir, tmp_path / "killed", 0.0)
    for process in (straight, resumed):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err.decode()[-2000:]
    a = torch.load(tmp_path / "straight" / "checkpoint_final.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint_final.pt", weights_only=True)
    assert a["train_state"]["step"] == b["train_state"]["step"] == ITERATIONS * EPOCHS
    assert a["train_state"]["ema_pseudo_dice"] == b["train_state"]["ema_pseudo_dice"]
    assert a["train_state"]["best_step"] == b["train_state"]["best_step"]
    assert a["network_weights"].keys() == b["network_weights"].keys()
    for name, tensor in a["network_weights"].items():
        assert torch.equal(tensor, b["network_weights"][name]), name
    losses = [[json.loads(line)["train_loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("straight", "killed")]  # fmt: skip
    assert losses[0] == losses[1]
    assert len(losses[0]) == EPOCHS


if __name__ == "__main__":
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # the helpers and the suite-wide fixtures they import
    _train(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
