"""Trainer: a short run end to end, exact resume, refusals, composition, and run-folder contents."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_data_helpers import make_plan, trainer_setup

from nnseg.checkpoint import Checkpoint
from nnseg.errors import CheckpointError, ConfigError, StoreError
from nnseg.losses import DiceCELoss
from nnseg.network import build_network
from nnseg.preprocessing import PreprocessedStore
from nnseg.training._callbacks import Callback, EarlyStopping, MetricsLog, ProgressBar
from nnseg.training._config import TrainerConfig
from nnseg.training._split import Split
from nnseg.training._trainer import Trainer

CONFIG = TrainerConfig(
    iterations_per_epoch=2,
    num_epochs=4,
    val_iterations_per_epoch=1,
    num_loader_workers=0,
    seed=3,
    final_validation=False,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return trainer_setup(tmp_path_factory.mktemp("store"), ("case_0", "case_1", "case_2", "case_3"))


def _trainer(setup: dict[str, Any], config: TrainerConfig = CONFIG, **kwargs: Any) -> Trainer:
    kwargs.setdefault("callbacks", [MetricsLog()])
    return Trainer(setup["plan"], setup["store"], setup["split"], spec=setup["spec"], config=config, **kwargs)


class Crash(RuntimeError):
    pass


class CrashAtEpoch(Callback):
    """Raises at the end of an epoch, before its checkpoint: like a kill in the middle of that epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if metrics["epoch"] == self.epoch:
            raise Crash(f"crash in epoch {self.epoch}")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["network_weights"]


def _step(path: Path) -> int:
    return Checkpoint.load(path).train_state.step


def test_short_run_writes_a_complete_run_folder(setup: dict[str, Any], tmp_path: Path) -> None:
    final = _trainer(setup).fit(tmp_path / "run")
    assert final == tmp_path / "run" / "checkpoint_final.pt"
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["checkpoint_best.pt", "checkpoint_final.pt", "metrics.jsonl", "run.json"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1, 2, 3]
    assert [m["step"] for m in lines] == [2, 4, 6, 8]
    assert all(torch.isfinite(torch.tensor(m["train_loss"])) for m in lines)
    assert lines[0]["lr"] == CONFIG.initial_lr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["split"]["val"] == ["case_4"]
    assert _step(final) == CONFIG.total_steps


def test_stopped_and_resumed_run_equals_a_straight_run(setup: dict[str, Any], tmp_path: Path) -> None:
    straight = _trainer(setup).fit(tmp_path / "straight")
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(2)]).fit(tmp_path / "resumed")
    assert _step(tmp_path / "resumed" / "checkpoint_latest.pt") == 4
    assert not (tmp_path / "resumed" / "checkpoint_final.pt").exists()
    resumed = _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(99)]).fit(tmp_path / "resumed")
    for name, tensor in _weights(straight).items():
        assert torch.equal(_weights(resumed)[name], tensor), name
    straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    resumed_log = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in resumed_log] == [json.loads(x)["train_loss"] for x in straight_log]


def test_a_run_resumes_exactly_from_a_format_1_checkpoint(setup: dict[str, Any], tmp_path: Path) -> None:
    straight = _trainer(setup).fit(tmp_path / "straight")
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(2)]).fit(tmp_path / "old")
    latest = tmp_path / "old" / "checkpoint_latest.pt"
    torch.save(Checkpoint.load(latest).legacy_dict(), latest)  # the dict layout nnseg wrote before Checkpoint
    assert torch.load(latest, weights_only=True)["format_version"] == 1
    resumed = _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(99)]).fit(tmp_path / "old")
    for name, tensor in _weights(straight).items():
        assert torch.equal(_weights(resumed)[name], tensor), name
    old, new = Checkpoint.load(resumed).train_state, Checkpoint.load(straight).train_state
    # layout 1 did not record where the best was reached; everything else continues exactly
    assert dataclasses.replace(old, best_step=new.best_step, best_epoch=new.best_epoch) == new


class BrokenTeardown(Callback):
    def on_fit_error(self, trainer: Trainer, error: BaseException) -> None:
        raise ValueError("teardown failed")


def test_the_progress_bar_is_closed_when_fit_raises(setup: dict[str, Any], tmp_path: Path) -> None:
    bar, seen = ProgressBar(disable=True), []

    class Opened(Callback):
        def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
            seen.append(bar.is_open)

    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1})
    with pytest.raises(Crash, match="crash in epoch 0"):  # the original error, not the teardown's
        _trainer(setup, config, callbacks=[bar, Opened(), BrokenTeardown(), CrashAtEpoch(0)]).fit(tmp_path / "run")
    assert seen == [True]
    assert not bar.is_open


def test_a_finished_run_is_not_trained_again(setup: dict[str, Any], tmp_path: Path) -> None:
    final = _trainer(setup).fit(tmp_path / "run")
    before = final.read_bytes()
    assert _trainer(setup).fit(tmp_path / "run") == final
    early = _trainer(setup, callbacks=[EarlyStopping(patience=1, min_delta=1.0)]).fit(tmp_path / "early")
    assert _step(early) == 2 * CONFIG.iterations_per_epoch
    assert final.read_bytes() == before
    # killed between writing the final checkpoint and removing the latest one: the rerun tidies up
    (tmp_path / "run" / "checkpoint_latest.pt").write_bytes(before)
    assert _trainer(setup).fit(tmp_path / "run") == final
    assert not (tmp_path / "run" / "checkpoint_latest.pt").exists()


def test_resuming_with_another_config_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(1)]).fit(tmp_path / "run")
    other = TrainerConfig.from_json({**CONFIG.to_json(), "seed": 4, "num_loader_workers": 1})
    with pytest.raises(
        CheckpointError,
        match=r"holds a checkpoint of a different run: config\.seed is 3 in the "
        r"folder, 4 in this run\. Use a new run folder",
    ):
        _trainer(setup, other).fit(tmp_path / "run")
    other_plan = {**setup, "plan": make_plan(batch_size=3)}  # same preprocessing: the store fits, the run does not
    with pytest.raises(CheckpointError, match=r"plan\.batch_size is 2 in the folder, 3 in this run"):
        _trainer(other_plan).fit(tmp_path / "run")
    other_split = {**setup, "split": Split(("case_0", "case_1", "case_2", "case_4"), ("case_3",), 0)}
    with pytest.raises(CheckpointError, match=r"split\.train is .* in the folder, .* in this run; split\.val is"):
        _trainer(other_split).fit(tmp_path / "run")
    with pytest.raises(
        ConfigError,
        match=r"holds the state of 2 callback\(s\) but the trainer has 1; resume with "
        r"the same callbacks",
    ):
        _trainer(setup, callbacks=[MetricsLog()]).fit(tmp_path / "run")
    resumed = _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(99)]).fit(tmp_path / "run")  # still resumable
    assert _step(resumed) == CONFIG.total_steps


def test_a_run_killed_before_its_first_checkpoint_refuses_another_config(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(0)]).fit(tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint_latest.pt").exists()
    other = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 5})
    with pytest.raises(
        CheckpointError,
        match=r"holds run\.json \(no checkpoint yet\) of a different run: "
        r"config\.num_epochs is 4 in the folder, 5 in this run\..* Delete .*run\.json if that run is "
        r"abandoned",
    ):
        _trainer(setup, other).fit(tmp_path / "run")
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"run\.json cannot be read"):
        _trainer(setup).fit(tmp_path / "run")


def test_a_checkpoint_holds_everything_needed_to_resume(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(1)]).fit(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "checkpoint_latest.pt", weights_only=True)
    assert set(saved) == {"format_version", "network_weights", "optimizer_state", "scheduler_state", "grad_scaler_state",
                          "train_state", "callback_states", "config", "plan", "plan_name", "dataset_spec", "split",
                          "plans_hash", "world_size", "extra"}  # fmt: skip
    checkpoint = Checkpoint.load(tmp_path / "run" / "checkpoint_latest.pt")
    network = build_network(setup["plan"].architecture, num_input_channels=1, num_outputs=3)
    assert list(checkpoint.network_weights) == list(network.state_dict())  # no module. / _orig_mod. prefixes
    optimizer = checkpoint.optimizer_state
    assert len(optimizer["param_groups"][0]["params"]) == len(list(network.parameters()))
    assert all("momentum_buffer" in state for state in optimizer["state"].values())
    assert optimizer["state"]  # (the lowest deep-supervision head has weight 0: no buffer)
    state = checkpoint.train_state
    assert (state.step, state.epoch, state.next_step, state.seed) == (2, 1, 2, 3)
    assert saved["train_state"]["loader"] == {"seed": 3, "next_step": 2}
    assert checkpoint.scheduler_state == {"next_step": 2, "lr": CONFIG.learning_rate(2)}
    assert state.rng_state is not None
    assert {"python", "numpy", "torch"} <= set(state.rng_state)
    assert len(checkpoint.callback_states) == 2
    assert len(checkpoint.callback_states[0]["lines"]) == 1
    assert checkpoint.config == CONFIG.to_json()
    assert checkpoint.plan == setup["plan"].to_json(standalone=True)
    assert checkpoint.dataset_spec == setup["spec"].to_dict()
    assert checkpoint.plans_hash == setup["plan"].preprocessing_hash()
    assert checkpoint.world_size == 1
    assert checkpoint.format_version == 2
    first_epoch = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert state.ema_pseudo_dice == first_epoch["ema_pseudo_dice"]


def test_best_checkpoint_follows_the_ema_of_the_pseudo_dice(setup: dict[str, Any], tmp_path: Path) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "iterations_per_epoch": 1, "num_epochs": 6})
    _trainer(setup, config, callbacks=None).fit(tmp_path / "run")  # the default callbacks
    assert (tmp_path / "run" / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ema = metrics[0]["pseudo_dice"]
    for m in metrics:  # nnU-Net's EMA: the first value, then 0.9 * previous + 0.1 * current
        ema = m["pseudo_dice"] if m is metrics[0] else 0.9 * ema + 0.1 * m["pseudo_dice"]
        assert m["ema_pseudo_dice"] == pytest.approx(ema)
    best = max(metrics, key=lambda m: m["ema_pseudo_dice"])  # the first epoch reaching the maximum
    saved = Checkpoint.load(tmp_path / "run" / "checkpoint_best.pt").train_state
    assert saved.step == saved.best_step == best["step"]
    assert saved.best_epoch == best["epoch"] == saved.epoch - 1
    assert saved.best_ema_pseudo_dice == best["ema_pseudo_dice"]
    final = Checkpoint.load(tmp_path / "run" / "checkpoint_final.pt").train_state
    assert (final.best_step, final.best_epoch, final.best_ema_pseudo_dice) == (saved.step, saved.best_epoch,
                                                                             saved.best_ema_pseudo_dice)  # fmt: skip


class RecordLr(Callback):
    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.rates.append(trainer.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["per_step", "per_epoch"])
def test_the_optimizer_follows_the_schedule(setup: dict[str, Any], tmp_path: Path, schedule: str) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 2, "val_iterations_per_epoch": 0,
                                      "lr_schedule": schedule})  # fmt: skip
    record = RecordLr()
    _trainer(setup, config, callbacks=[record]).fit(tmp_path / "run")
    assert record.rates == [config.learning_rate(s) for s in range(config.total_steps)]
    distinct = len(set(record.rates))
    assert distinct == (config.total_steps if schedule == "per_step" else config.num_epochs)


def test_periodic_checkpoints_are_kept_as_configured(setup: dict[str, Any], tmp_path: Path) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "iterations_per_epoch": 1, "num_epochs": 8,
                                      "val_iterations_per_epoch": 0, "checkpoint_every_epochs": 2,
                                      "keep_checkpoints": 2})  # fmt: skip
    with pytest.raises(Crash):
        _trainer(setup, config, callbacks=[MetricsLog(), CrashAtEpoch(7)]).fit(tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint_*.pt")) == [
        "checkpoint_epoch_00004.pt",
        "checkpoint_epoch_00006.pt",
        "checkpoint_latest.pt",
    ]
    assert [_step(run / n) for n in ("checkpoint_epoch_00004.pt", "checkpoint_latest.pt")] == [4, 6]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_damaged_checkpoint_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(1)]).fit(tmp_path / "run")
    latest = tmp_path / "run" / "checkpoint_latest.pt"
    latest.write_bytes(latest.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"checkpoint_latest\.pt cannot be read"):
        _trainer(setup).fit(tmp_path / "run")


def test_split_with_cases_the_store_lacks(setup: dict[str, Any], tmp_path: Path) -> None:
    trainer = Trainer(setup["plan"], setup["store"], Split(("case_0", "nope"), ("case_4",), 1), spec=setup["spec"],
                      config=CONFIG)  # fmt: skip
    with pytest.raises(ConfigError, match=r"names 1 case\(s\) that the store .* lacks: 'nope'"):
        trainer.fit(tmp_path / "run")


@pytest.mark.parametrize(("device", "match"), [("cuda:7", "CUDA device"), ("banana", "is not a torch device")])
def test_unknown_devices_are_refused(setup: dict[str, Any], device: str, match: str) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ConfigError, match=match):
        _trainer(setup, device=device)


def test_a_loss_passed_in_replaces_the_default(setup: dict[str, Any], tmp_path: Path) -> None:
    calls: list[int] = []

    class CountingLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = DiceCELoss(batch_dice=True)

        def forward(self, outputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
            calls.append(len(outputs))
            return self.inner(outputs[0], targets[0])

    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1})
    _trainer(setup, config, loss=CountingLoss()).fit(tmp_path / "run")
    assert len(calls) == config.total_steps + config.val_iterations_per_epoch


def test_final_validation_writes_every_validation_case_and_a_summary(setup: dict[str, Any], tmp_path: Path) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1, "final_validation": True})
    trainer = _trainer(setup, config)
    trainer.fit(tmp_path / "run")
    validation = tmp_path / "run" / "validation"
    assert sorted(p.name for p in validation.iterdir()) == ["case_4.npy", "summary_preprocessed.json"]
    seg = np.load(validation / "case_4.npy")
    assert seg.shape == (20, 20, 20)
    assert set(np.unique(seg).tolist()) <= {0, 1, 2}
    summary = json.loads((validation / "summary_preprocessed.json").read_text())
    assert list(summary["per_case"]) == ["case_4"]
    assert summary["mean_dice"] == trainer.validation_summary["mean_dice"]
    # a finished run whose validation is missing (killed during it) only redoes the validation
    (validation / "summary_preprocessed.json").unlink()
    (validation / "case_4.npy").unlink()
    before = (tmp_path / "run" / "checkpoint_final.pt").read_bytes()
    _trainer(setup, config).fit(tmp_path / "run")
    assert (validation / "case_4.npy").is_file()
    assert (tmp_path / "run" / "checkpoint_final.pt").read_bytes() == before


def test_a_store_of_other_plans_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    other = make_plan(use_mask=(True,))
    trainer = Trainer(other, setup["store"], setup["split"], spec=setup["spec"], config=CONFIG)
    with pytest.raises(StoreError, match=r"was built for preprocessing .* differs in: .*use_mask_for_norm"):
        trainer.fit(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"is not a preprocessed store \(no store.json\)"):
        Trainer(setup["plan"], PreprocessedStore(tmp_path), setup["split"], spec=setup["spec"], config=CONFIG).fit(
            tmp_path / "run"
        )


def test_a_checkpoint_of_another_network_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(Crash):
        _trainer(setup, callbacks=[MetricsLog(), CrashAtEpoch(1)]).fit(tmp_path / "run")
    other = build_network(make_plan(stages=2).architecture, num_input_channels=1, num_outputs=3)
    with pytest.raises(CheckpointError, match=r"weights do not fit the network .* written for a different network"):
        _trainer(setup, network=other).fit(tmp_path / "run")


def test_a_split_without_validation_cases_trains_without_pseudo_dice(setup: dict[str, Any], tmp_path: Path) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1, "final_validation": True})
    split = Split(("case_0", "case_1"), (), None)
    Trainer(setup["plan"], setup["store"], split, spec=setup["spec"], config=config, callbacks=[MetricsLog()]).fit(
        tmp_path / "run"
    )
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint_final.pt", "metrics.jsonl", "run.json"]
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert math.isnan(metrics["pseudo_dice"])
    assert math.isnan(metrics["val_loss"])


def test_augmentation_device_reaches_the_training_loader(setup: dict[str, Any]) -> None:
    on_device = _trainer(setup, dataclasses.replace(CONFIG, augmentation_device="cpu")).build_train_loader()
    in_workers = _trainer(setup).build_train_loader()
    assert on_device.device_augmenter is not None
    assert in_workers.device_augmenter is None
