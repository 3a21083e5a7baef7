"""RunFolder on its own: paths, retention and compatibility with plain Checkpoint values (no trainer needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from nnseg.checkpoint import Checkpoint, TrainState
from nnseg.errors import CheckpointError
from nnseg.training._run_folder import RunFolder

DESCRIPTION: dict[str, Any] = {"plan": {"patch_size": [8, 8]}, "plan_name": "2d", "dataset_spec": {"labels": {}},
                               "split": {"train": ["a"], "val": ["b"]}, "config": {"seed": 0, "num_loader_workers": 2},
                               "plans_hash": "h"}  # fmt: skip


def _checkpoint(step: int) -> Checkpoint:
    return Checkpoint({"w": torch.full((2,), float(step))}, TrainState(step=step), **DESCRIPTION)


def test_after_epoch_writes_best_latest_and_keeps_the_last_periods(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, checkpoint_every_epochs=2, keep_checkpoints=2)
    built: list[int] = []

    def build(step: int) -> Any:
        return lambda: built.append(step) or _checkpoint(step)

    for epoch in range(6):
        folder.after_epoch(build(epoch), epoch=epoch, best=epoch == 2, finished=epoch == 5)
    assert built == [1, 2, 3]  # only when something is written, once per epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_best.pt", "checkpoint_epoch_00002.pt",
                                                          "checkpoint_epoch_00004.pt", "checkpoint_latest.pt"]  # fmt: skip
    assert folder.load(folder.best_path).train_state.step == 2
    assert folder.load(folder.latest_path).train_state.step == 3
    assert folder.save_final(lambda: _checkpoint(6)) == folder.final_path
    assert not folder.latest_path.exists()


def test_a_non_main_process_writes_nothing(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path, is_main=False)
    folder.after_epoch(lambda: pytest.fail("built on a non-main rank"), epoch=0, best=True, finished=False)
    folder.save_final(lambda: pytest.fail("built on a non-main rank"))
    assert folder.start(DESCRIPTION) is None
    assert list(tmp_path.iterdir()) == []


def test_start_resumes_a_compatible_folder_and_refuses_another_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    assert folder.start(DESCRIPTION) is None
    assert folder.run_json_path.is_file()
    _checkpoint(4).save(folder.latest_path)
    resumable = {**DESCRIPTION, "config": {"seed": 0, "num_loader_workers": 8}}  # a change that keeps the result
    resumed = folder.start(resumable)
    assert resumed is not None
    assert resumed.train_state.step == 4
    other = {**DESCRIPTION, "config": {"seed": 1, "num_loader_workers": 2}}
    with pytest.raises(CheckpointError, match=r"holds a checkpoint of a different run: config\.seed is 0 in the "
                                              r"folder, 1 in this run"):  # fmt: skip
        folder.start(other)
