"""nnU-Net's defaults (per-epoch PolyLR, fresh validation batches) and the final-validation and fine-tuning options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_data_helpers import trainer_setup

from nnseg.errors import CheckpointError, ConfigError
from nnseg.training._callbacks import Callback, MetricsLog
from nnseg.training._config import TrainerConfig
from nnseg.training._pretrained import is_segmentation_head
from nnseg.training._trainer import Trainer

CONFIG = TrainerConfig(iterations_per_epoch=2, num_epochs=3, val_iterations_per_epoch=1, num_loader_workers=0, seed=3,
                       final_validation=False)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return trainer_setup(tmp_path_factory.mktemp("store"), ("case_0", "case_1", "case_2"))


def _trainer(setup: dict[str, Any], config: TrainerConfig = CONFIG, **kwargs: Any) -> Trainer:
    kwargs.setdefault("callbacks", [MetricsLog()])
    return Trainer(setup["plan"], setup["store"], setup["split"], spec=setup["spec"], config=config, **kwargs)


class Record(Callback):
    """The learning rate of every step and the weights at the start of ``fit``."""

    def __init__(self) -> None:
        self.rates: list[float] = []
        self.start: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: Trainer, run_dir: Path) -> None:
        self.start = {k: v.clone() for k, v in trainer.network.state_dict().items()}

    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None:
        self.rates.append(trainer.optimizer.param_groups[0]["lr"])


def test_defaults_are_nnunets() -> None:
    config = TrainerConfig()
    assert (config.lr_schedule, config.replay_validation_batches, config.probabilistic_oversampling) == (
        "per_epoch",
        False,
        False,
    )
    assert (config.save_probabilities, config.validate_with_best, config.pretrained_weights) == (False, False, None)


def test_learning_rate_of_every_epoch_is_nnunets_poly_formula(setup: dict[str, Any], tmp_path: Path) -> None:
    record = Record()
    _trainer(setup, callbacks=[MetricsLog(), record]).fit(tmp_path / "run")
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for epoch in range(CONFIG.num_epochs):
        nnunet = CONFIG.initial_lr * (1 - epoch / CONFIG.num_epochs) ** 0.9  # PolyLRScheduler.step(epoch)
        assert lines[epoch]["lr"] == pytest.approx(nnunet, rel=1e-12)
        steps = record.rates[epoch * CONFIG.iterations_per_epoch : (epoch + 1) * CONFIG.iterations_per_epoch]
        assert steps == pytest.approx([nnunet] * CONFIG.iterations_per_epoch, rel=1e-12)


def _val_data(trainer: Trainer, epoch: int) -> torch.Tensor:
    loader = trainer.build_val_loader()
    assert loader is not None
    return torch.cat([batch.data for batch in loader.batches(epoch)])


def test_validation_batches_are_fresh_each_epoch_and_repeat_for_the_seed(setup: dict[str, Any]) -> None:
    first, again = _trainer(setup), _trainer(setup)
    assert not torch.equal(_val_data(first, 0), _val_data(first, 1))
    assert torch.equal(_val_data(first, 1), _val_data(again, 1))
    replay = _trainer(setup, TrainerConfig.from_json({**CONFIG.to_json(), "replay_validation_batches": True}))
    assert torch.equal(_val_data(replay, 0), _val_data(replay, 2))


def test_save_probabilities_writes_the_predictors_npz_and_sidecar(setup: dict[str, Any], tmp_path: Path) -> None:
    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1, "final_validation": True,
                                      "save_probabilities": True})  # fmt: skip
    _trainer(setup, config).fit(tmp_path / "run")
    validation = tmp_path / "run" / "validation"
    with np.load(validation / "case_4.npz") as npz:
        assert list(npz.keys()) == ["probabilities"]
        probabilities = npz["probabilities"]
    assert probabilities.shape[0] == 3
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(0), np.load(validation / "case_4.npy"))
    properties = json.loads((validation / "case_4.json").read_text())
    assert properties["shape_before_cropping"] == list(probabilities.shape[1:])


def test_validate_finished_reruns_the_validation_with_the_best_weights(setup: dict[str, Any], tmp_path: Path) -> None:
    run = tmp_path / "run"
    _trainer(setup).fit(run)
    assert not (run / "validation").exists()
    best = TrainerConfig.from_json({**CONFIG.to_json(), "validate_with_best": True})
    trainer = _trainer(setup, best)
    summary = trainer.validate_finished(run)
    assert (run / "validation" / "summary_preprocessed.json").is_file()
    assert summary["per_case"].keys() == {"case_4"}
    saved = torch.load(run / "checkpoint_best.pt", weights_only=True)["network_weights"]
    for name, tensor in trainer.network.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_validate_finished_refuses_an_unfinished_run_and_writes_nothing(setup: dict[str, Any], tmp_path: Path) -> None:
    run = tmp_path / "never"
    with pytest.raises(
        ConfigError, match=r"the run .*never has not finished: checkpoint_final.pt is missing.*train it"
    ):
        _trainer(setup).validate_finished(run)
    assert not run.exists()


def test_validate_with_best_without_a_best_checkpoint_is_refused(setup: dict[str, Any], tmp_path: Path) -> None:
    no_val = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1, "val_iterations_per_epoch": 0})
    _trainer(setup, no_val).fit(tmp_path / "run")
    best = TrainerConfig.from_json({**no_val.to_json(), "validate_with_best": True})
    with pytest.raises(ConfigError, match=r"--val-best.*checkpoint_best.pt does not exist.*drop --val-best"):
        _trainer(setup, best).validate_finished(tmp_path / "run")
    assert not (tmp_path / "run" / "validation").exists()


def test_pretrained_weights_start_a_new_run_except_the_heads(setup: dict[str, Any], tmp_path: Path) -> None:
    source = _trainer(setup, TrainerConfig.from_json({**CONFIG.to_json(), "seed": 11})).build_network()
    torch.save({"network_weights": source.state_dict()}, tmp_path / "pretrained.pth")  # nnU-Net's layout
    config = TrainerConfig.from_json({**CONFIG.to_json(), "num_epochs": 1, "val_iterations_per_epoch": 0,
                                      "pretrained_weights": str(tmp_path / "pretrained.pth")})  # fmt: skip
    record = Record()
    trainer = _trainer(setup, config, callbacks=[record])
    fresh = trainer.build_network().state_dict()
    trainer.fit(tmp_path / "run")
    heads = [name for name in record.start if is_segmentation_head(name)]
    assert heads
    for name, tensor in record.start.items():
        expected = fresh[name] if is_segmentation_head(name) else source.state_dict()[name]
        assert torch.equal(tensor, expected), name


def test_bad_pretrained_weights_name_the_file_and_write_nothing(setup: dict[str, Any], tmp_path: Path) -> None:
    source = _trainer(setup).build_network()
    torch.save({"network_weights": source.state_dict()}, tmp_path / "full.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:200])
    config = TrainerConfig.from_json({**CONFIG.to_json(), "pretrained_weights": str(tmp_path / "truncated.pth")})
    with pytest.raises(CheckpointError, match=r"pretrained weights .*truncated.pth cannot be loaded safely"):
        _trainer(setup, config).fit(tmp_path / "run")
    assert not (tmp_path / "run").exists()
    other = {k: v[..., :1] if v.ndim == 5 else v for k, v in source.state_dict().items()}  # another patch shape
    torch.save({"network_weights": other}, tmp_path / "other.pth")
    config = TrainerConfig.from_json({**CONFIG.to_json(), "pretrained_weights": str(tmp_path / "other.pth")})
    with pytest.raises(CheckpointError, match=r"other.pth do not fit this network \(\d+ differing parameter"):
        _trainer(setup, config).fit(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_config_field_added_later_reads_back_as_the_old_behaviour(setup: dict[str, Any], tmp_path: Path) -> None:
    """A run folder written before replay_validation_batches existed replayed its batches: resuming it now
    with the new default is refused with the field named, and with the opt-in it resumes."""
    from nnseg.training._run_folder import RunFolder

    trainer = _trainer(setup)
    description = trainer.describe()
    old = {**description, "config": {k: v for k, v in description["config"].items()
                                     if k not in ("replay_validation_batches", "save_probabilities")}}  # fmt: skip
    folder = RunFolder(tmp_path)
    with pytest.raises(CheckpointError, match="config.replay_validation_batches is True in the folder, False"):
        folder.check_compatible(old, description)
    replay = _trainer(setup, TrainerConfig.from_json({**CONFIG.to_json(), "replay_validation_batches": True}))
    folder.check_compatible(old, replay.describe())
