"""A cascade run stopped mid-epoch by SIGTERM and resumed ends bitwise-identical to an uninterrupted one.

The cascade's batches add the one-hot previous stage and its own augmentations (binary morphology, removal of
small components); they too must be a pure function of ``(seed, step)`` for the resume to be exact.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import TrainingStopped
from nnseg.preprocessing import PreprocessedStore
from nnseg.training._callbacks import Callback, MetricsLog
from nnseg.training._cascade import CascadeTrainer
from nnseg.training._config import TrainerConfig
from nnseg.training._next_stage import PreviousStageSegmentations
from nnseg.training._split import Split
from nnseg.training._trainer import Trainer

SHAPES = [(20, 24, 24), (24, 20, 22), (18, 26, 20), (20, 20, 20)]
IDS = [f"case_{i}" for i in range(len(SHAPES))]
ITERATIONS, EPOCHS = 2, 3
STOP_AFTER = ITERATIONS + 1
"""The step after which the stopped run gets SIGTERM: in the middle of its second epoch."""
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PreprocessedStore:
    """The cascade's store, and previous-stage segmentations that differ from the labels (so they matter)."""
    root = tmp_path_factory.mktemp("cascade_store")
    cases = {case_id: threshold_case(s, seed=i) for i, (case_id, s) in enumerate(zip(IDS, SHAPES))}
    write_store(root, _plan(), make_spec(), cases)
    store = PreprocessedStore(root)
    segs = PreviousStageSegmentations.of(root, "nnUNetPlans__3d_lowres__nnseg")
    for index, (case_id, (_, seg)) in enumerate(cases.items()):
        shifted = np.roll(seg[0], shift=2 + index, axis=0)  # a plausible but imperfect lowres segmentation
        segs.write(case_id, shifted.astype(np.uint8), fold=index % 2, source={"plans_name": "nnUNetPlans"})
    return store


def _plan() -> Any:
    import dataclasses

    return dataclasses.replace(make_plan(), name="3d_cascade_fullres", previous_stage="3d_lowres")


def _trainer(store: PreprocessedStore, stop_after: int = -1) -> CascadeTrainer:
    config = TrainerConfig(iterations_per_epoch=ITERATIONS, num_epochs=EPOCHS, val_iterations_per_epoch=1,
                           num_loader_workers=0, seed=7, final_validation=False)  # fmt: skip
    previous = PreviousStageSegmentations.of(store.root, "nnUNetPlans__3d_lowres__nnseg")
    split = Split(tuple(IDS[:3]), tuple(IDS[3:]), 0)
    return CascadeTrainer(_plan(), store, split, previous=previous, spec=make_spec(), config=config,
                          callbacks=[MetricsLog(), _SigtermAt(stop_after)])  # fmt: skip


class _SigtermAt(Callback):
    """Send this process SIGTERM after ``step`` (the trainer stops at the next step boundary); -1: never.

    Every run has it, so that the checkpoints of all runs hold the same callbacks.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_and_resume_end_bitwise_identical(store: PreprocessedStore, tmp_path: Path) -> None:
    straight = _trainer(store).fit(tmp_path / "straight")
    stopped_dir = tmp_path / "stopped"
    with pytest.raises(
        TrainingStopped, match=rf"training in {stopped_dir} stopped by SIGTERM after step {STOP_AFTER} "
    ):
        _trainer(store, STOP_AFTER).fit(stopped_dir)
    latest = torch.load(stopped_dir / "checkpoint_latest.pt", weights_only=True)
    assert latest["train_state"]["step"] == STOP_AFTER
    assert not (stopped_dir / "checkpoint_final.pt").exists()
    resumed = _trainer(store).fit(stopped_dir)  # a fresh trainer, as a rerun of `nnseg train` builds

    a, b = (torch.load(p, weights_only=True) for p in (straight, resumed))
    assert a["train_state"]["step"] == b["train_state"]["step"] == ITERATIONS * EPOCHS
    assert a["train_state"]["ema_pseudo_dice"] == b["train_state"]["ema_pseudo_dice"]
    first = next(k for k in a["network_weights"] if k.endswith("conv.weight"))
    assert a["network_weights"][first].shape[1] == 1 + 2  # the image and the one-hot previous stage
    for name, tensor in a["network_weights"].items():
        assert torch.equal(tensor, b["network_weights"][name]), name
    losses = [[json.loads(line)["train_loss"] for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
              for path in (straight, resumed)]  # fmt: skip
    assert losses[0] == losses[1]
    assert len(losses[0]) == EPOCHS


def test_the_previous_stage_changes_the_weights(store: PreprocessedStore, tmp_path: Path) -> None:
    """Guards the test above: the resume is compared on a run whose inputs include the previous stage."""
    segs = PreviousStageSegmentations.of(store.root, "nnUNetPlans__3d_lowres__nnseg")
    saved = {case_id: segs.read(case_id)[0] for case_id in IDS}
    reference = torch.load(_trainer(store).fit(tmp_path / "reference"), weights_only=True)["network_weights"]
    try:
        for case_id, seg in saved.items():
            segs.write(case_id, np.zeros_like(seg), fold=0, source={"plans_name": "nnUNetPlans"})
        other = torch.load(_trainer(store).fit(tmp_path / "other"), weights_only=True)["network_weights"]
    finally:
        for case_id, seg in saved.items():
            segs.write(case_id, seg, fold=0, source={"plans_name": "nnUNetPlans"})
    assert any(not torch.equal(t, other[name]) for name, t in reference.items())
