"""TrainerConfig: defaults, the step budget, the learning-rate schedule, JSON, and every rejected value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnseg.errors import ConfigError
from nnseg.training._config import TrainerConfig


def test_defaults_are_nnunets() -> None:
    config = TrainerConfig()
    assert (config.iterations_per_epoch, config.num_epochs, config.val_iterations_per_epoch) == (250, 1000, 50)
    assert (config.initial_lr, config.weight_decay, config.momentum, config.nesterov) == (1e-2, 3e-5, 0.99, True)
    assert (config.oversample_foreground, config.grad_clip_norm, config.poly_exponent) == (0.33, 12.0, 0.9)
    assert config.total_steps == 250_000


def test_per_epoch_schedule_reproduces_nnunets_poly_steps() -> None:
    config = TrainerConfig(lr_schedule="per_epoch")
    assert config.learning_rate(0) == 1e-2
    assert config.learning_rate(249) == 1e-2  # the rate changes only at epoch starts
    assert config.learning_rate(250) == pytest.approx(1e-2 * (1 - 1 / 1000) ** 0.9)
    assert config.learning_rate(999 * 250) == pytest.approx(2.0e-5, rel=0.03)


@given(st.integers(1, 50), st.integers(1, 50))
def test_per_step_schedule_decreases_from_initial_lr(iterations: int, epochs: int) -> None:
    config = TrainerConfig(iterations_per_epoch=iterations, num_epochs=epochs)
    rates = [config.learning_rate(s) for s in range(config.total_steps)]
    assert rates[0] == config.initial_lr
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] > 0


def test_step_budget() -> None:
    config = TrainerConfig.from_step_budget(1000, iterations_per_epoch=250, seed=3)
    assert (config.iterations_per_epoch, config.num_epochs, config.seed) == (250, 4, 3)
    small = TrainerConfig.from_step_budget(40)
    assert (small.iterations_per_epoch, small.num_epochs) == (40, 1)
    with pytest.raises(
        ConfigError,
        match=r"total_steps=1100 is not a multiple of iterations_per_epoch=250.*Use "
        r"1000 or 1250 steps",
    ):
        TrainerConfig.from_step_budget(1100)


def test_json_round_trip_and_unknown_field() -> None:
    config = TrainerConfig(num_epochs=3, amp=False, grad_clip_norm=None)
    assert TrainerConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match=r"unknown field 'num_epoch'\. Did you mean 'num_epochs'\?"):
        TrainerConfig.from_json({"num_epoch": 3})
    with pytest.raises(
        ConfigError, match=r"expected a JSON object of fields \(a dict, as to_json writes\); got a list"
    ):
        TrainerConfig.from_json([250, 1000])  # type: ignore[arg-type]


def test_amp_is_automatic_on_cuda_only() -> None:
    assert TrainerConfig().use_amp("cuda")
    assert not TrainerConfig().use_amp("cpu")
    assert TrainerConfig(amp=False).use_amp("cuda") is False


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (
            "iterations_per_epoch",
            0,
            r"iterations_per_epoch must be an integer >= 1; got 0\. Set iterations_per_epoch=1",
        ),
        ("seed", -1, r"seed must be an integer >= 0; got -1\. Set seed=0 or more"),
        ("num_epochs", 2.5, r"num_epochs must be an integer >= 1; got 2.5"),
        ("val_iterations_per_epoch", -1, r"val_iterations_per_epoch must be an integer >= 0"),
        ("initial_lr", 0.0, r"initial_lr must be a number in \(0, inf\); got 0.0"),
        ("momentum", 1.0, r"momentum must be a number in \[0, 1\); got 1.0\. Leave it at its default \(0.99\)"),
        ("oversample_foreground", 1.5, r"oversample_foreground must be a number in \[0, 1\]; got 1.5"),
        ("grad_clip_norm", float("nan"), r"grad_clip_norm must be a number"),
        (
            "lr_schedule",
            "per_epochs",
            r"lr_schedule must be one of 'per_step', 'per_epoch'; got 'per_epochs'\. Did you mean 'per_epoch'\?",
        ),
        ("amp", "yes", r"amp must be True, False or None \(auto\); got 'yes'"),
        ("compile", 1, r"compile must be True or False; got 1"),
        ("final_validation", "yes", r"final_validation must be True or False; got .yes."),
    ],
)
def test_invalid_values_are_rejected(field: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(TrainerConfig(), **{field: value})


def test_augmentation_device_is_a_device_name_or_none() -> None:
    assert TrainerConfig(augmentation_device="cpu").augmentation_device == "cpu"
    assert TrainerConfig().augmentation_device is None
    with pytest.raises(ConfigError, match=r"TrainerConfig: augmentation_device must be a torch device such as 'cpu', "
                                          r"'cuda' or 'cuda:1'; got 'gpu0'\."):  # fmt: skip
        TrainerConfig(augmentation_device="gpu0")
