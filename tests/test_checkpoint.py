"""Checkpoints: typed round trip, safe loading, format versions, deprecated shims, wrapper prefixes, RNG state."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    TrainState,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from nnseg.errors import CheckpointError, ConfigError


def _parts() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return net.state_dict(), optimizer.state_dict()


def _checkpoint(**changes: Any) -> Checkpoint:
    weights, optimizer = _parts()
    state = TrainState(step=7, epoch=3, ema_pseudo_dice=0.5, best_ema_pseudo_dice=0.6, best_step=4, best_epoch=1,
                       seed=2, rng_state=capture_rng_state())  # fmt: skip
    values: dict[str, Any] = {
        "network_weights": weights, "train_state": state, "optimizer_state": optimizer,
        "scheduler_state": {"next_step": 7, "lr": 0.01}, "callback_states": ({"lines": ["{}"]}, {}),
        "config": {"num_epochs": 2, "amp": None}, "plan": {"patch_size": [8, 8]}, "plan_name": "2d",
        "dataset_spec": {"labels": {"background": 0}}, "split": {"train": ["a"], "val": []}, "plans_hash": "abc",
        "world_size": 2, "extra": {"note": "x"},
    }  # fmt: skip
    return Checkpoint(**{**values, **changes})


def _v1_payload() -> dict[str, Any]:
    """A checkpoint in the dict layout nnseg wrote before ``Checkpoint`` (format 1)."""
    weights, optimizer = _parts()
    return {
        "format_version": 1, "network_weights": weights, "optimizer_state": optimizer, "grad_scaler_state": {},
        "step": 6, "world_size": 1, "rng_state": capture_rng_state(), "loader_state": {"seed": 3, "next_step": 6},
        "callback_states": [{"lines": ["a", "b", "c"]}], "config": {"iterations_per_epoch": 2, "seed": 3},
        "plan": {"patch_size": [8, 8]}, "plan_name": "2d", "dataset_spec": {"labels": {}}, "split": {"val": []},
        "plans_hash": "abc", "extra": {"ema_pseudo_dice": 0.25, "best_ema_pseudo_dice": 0.5, "mine": 1},
    }  # fmt: skip


def test_round_trip(tmp_path: Path) -> None:
    checkpoint = _checkpoint()
    path = tmp_path / "run" / "checkpoint_latest.pt"
    checkpoint.save(path)
    loaded = Checkpoint.load(path)
    assert loaded == dataclasses.replace(checkpoint, network_weights=loaded.network_weights,
                                         optimizer_state=loaded.optimizer_state)  # fmt: skip
    for name, tensor in checkpoint.network_weights.items():
        assert torch.equal(loaded.network_weights[name], tensor)
    assert loaded.optimizer_state["param_groups"] == checkpoint.optimizer_state["param_groups"]
    assert loaded.train_state.rng_state is not None
    assert torch.equal(loaded.train_state.rng_state["torch"], checkpoint.train_state.rng_state["torch"])  # type: ignore[index]
    assert loaded.format_version == FORMAT_VERSION == torch.load(path, weights_only=True)["format_version"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@settings(max_examples=25, deadline=None)
@given(
    step=st.integers(0, 10**9), epoch=st.integers(0, 10**6), seed=st.integers(0, 2**31),
    ema=st.one_of(st.just(math.nan), st.floats(0, 1)), best=st.one_of(st.just(-math.inf), st.floats(0, 1)),
    best_step=st.one_of(st.none(), st.integers(0, 10**9)),
)  # fmt: skip
def test_train_state_round_trip(
    step: int, epoch: int, seed: int, ema: float, best: float, best_step: int | None
) -> None:
    state = TrainState(step=step, epoch=epoch, ema_pseudo_dice=ema, best_ema_pseudo_dice=best, best_step=best_step,
                       best_epoch=None if best_step is None else epoch, seed=seed)  # fmt: skip
    again = TrainState.from_state_dict(state.state_dict())
    assert again.state_dict()["loader"] == {"seed": seed, "next_step": step}
    for name in ("step", "epoch", "seed", "best_step", "best_epoch"):
        assert getattr(again, name) == getattr(state, name)
    for name in ("ema_pseudo_dice", "best_ema_pseudo_dice"):
        assert getattr(again, name) == getattr(state, name) or math.isnan(getattr(again, name)) == math.isnan(ema)


def test_train_state_epochs_track_the_ema_and_the_best() -> None:
    state = TrainState(seed=1).advanced(2).end_epoch(0.4, momentum=0.9)
    assert (state.step, state.epoch, state.ema_pseudo_dice, state.best_step, state.best_epoch) == (2, 1, 0.4, 2, 0)
    assert state.is_best
    state = state.advanced(2).end_epoch(0.0, momentum=0.9)  # the EMA drops: not a new best
    assert state.ema_pseudo_dice == pytest.approx(0.36)
    assert not state.is_best
    assert state.best_step == 2
    state = state.advanced(2).end_epoch(math.nan, momentum=0.9)  # no validation: the EMA stays
    assert state.epoch == 3
    assert state.ema_pseudo_dice == pytest.approx(0.36)
    with pytest.raises(ConfigError, match=r"TrainState: step must be an integer >= 0; got -1"):
        TrainState(step=-1)


def test_unsafe_values_are_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    with pytest.raises(CheckpointError, match=r"a safe load \(weights_only=True\) refuses: payload\['extra'\]\['p'\]"):
        _checkpoint(extra={"p": Path("x")}).save(path)
    assert not path.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_files_give_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.pt"
    _checkpoint().save(path)
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 10, "empty": b""}[damage]
    )
    with pytest.raises(CheckpointError, match=r"c\.pt cannot be read .*truncated, corrupted or not a safe nnseg"):
        Checkpoint.load(path)


def test_a_pickled_payload_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "network_weights": {}, "train_state": {}, "x": Path("a")}, path)
    with pytest.raises(CheckpointError, match=r"checkpoint .*evil\.pt holds pickled Python objects that a safe load "
                                              r"\(weights_only=True\) refuses; .* It is not loaded"):  # fmt: skip
        Checkpoint.load(path)


def test_missing_file_foreign_content_and_format_versions(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"none\.pt does not exist; expected a file written by nnseg's trainer"):
        Checkpoint.load(tmp_path / "none.pt")
    torch.save({"network_weights": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt is not an nnseg checkpoint \(no 'format_version' key\)"):
        Checkpoint.load(tmp_path / "other.pt")
    torch.save({"format_version": 99, "network_weights": {}}, tmp_path / "new.pt")
    with pytest.raises(
        CheckpointError, match=r"new\.pt has format_version 99; this nnseg reads up to 2\. Upgrade nnseg"
    ):
        Checkpoint.load(tmp_path / "new.pt")
    torch.save({"format_version": 0, "network_weights": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt has format_version 0, which no nnseg release wrote \(known: "
                                              r"\[1, 2\]\); refusing to load it"):  # fmt: skip
        Checkpoint.load(tmp_path / "old.pt")
    torch.save({"format_version": 2, "network_weights": {}}, tmp_path / "part.pt")
    with pytest.raises(CheckpointError, match=r"part\.pt lacks key\(s\) \['train_state'\]; it was not written"):
        Checkpoint.load(tmp_path / "part.pt")
    torch.save({"format_version": 2, "network_weights": [], "train_state": {}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt: network_weights is a list, expected a dict"):
        Checkpoint.load(tmp_path / "bad.pt")


def test_a_format_1_checkpoint_is_upgraded_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    payload = _v1_payload()
    torch.save(payload, tmp_path / "v1.pt")  # exactly what nnseg's trainer wrote before Checkpoint existed
    with caplog.at_level(logging.INFO, logger="nnseg.checkpoint"):
        loaded = Checkpoint.load(tmp_path / "v1.pt")
    assert "v1.pt has format_version 1; upgraded to 2 in memory" in caplog.text
    state = loaded.train_state
    assert (state.step, state.epoch, state.seed, state.ema_pseudo_dice, state.best_ema_pseudo_dice) == (
        6,
        3,
        3,
        0.25,
        0.5,
    )
    assert state.best_step is None
    assert loaded.extra == {"mine": 1}
    assert loaded.format_version == 1
    assert loaded.callback_states == ({"lines": ["a", "b", "c"]},)
    assert loaded.plans_hash == "abc"
    assert torch.equal(state.rng_state["torch"], payload["rng_state"]["torch"])  # type: ignore[index]
    loaded.save(tmp_path / "v2.pt")  # rewritten in the current layout
    assert Checkpoint.load(tmp_path / "v2.pt").train_state == state


def test_deprecated_shims_warn_and_keep_the_old_dict_layout(tmp_path: Path) -> None:
    payload = _v1_payload()
    with pytest.warns(DeprecationWarning, match=r"save_checkpoint is deprecated; use nnseg\.checkpoint\.Checkpoint"):
        save_checkpoint(tmp_path / "c.pt", payload)
    assert Checkpoint.load(tmp_path / "c.pt").train_state.step == 6
    _checkpoint().save(tmp_path / "new.pt")
    for name, step in (("c.pt", 6), ("new.pt", 7)):
        with pytest.warns(DeprecationWarning, match=r"load_checkpoint is deprecated; use .*Checkpoint\.load\(path\)"):
            old = load_checkpoint(tmp_path / name)
        assert old["format_version"] == 1
        assert old["step"] == step
        assert old["loader_state"]["next_step"] == step
        assert {"network_weights", "optimizer_state", "rng_state", "callback_states", "config", "plan", "extra"} <= set(
            old
        )
    assert old["extra"] == {"note": "x", "ema_pseudo_dice": 0.5, "best_ema_pseudo_dice": 0.6}
    with (
        pytest.warns(DeprecationWarning, match="save_checkpoint"),
        pytest.raises(CheckpointError, match=r"missing key\(s\) \['step'\]"),
    ):
        save_checkpoint(tmp_path / "d.pt", {"network_weights": {}})


def test_wrapper_prefixes_are_removed() -> None:
    weights = {
        "module._orig_mod.conv.weight": torch.ones(1),
        "_orig_mod.module.bias": torch.zeros(1),
        "plain": torch.ones(2),
    }
    assert sorted(strip_wrapper_prefixes(weights)) == ["bias", "conv.weight", "plain"]


def test_rng_state_restores_every_generator(tmp_path: Path) -> None:
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    _checkpoint(train_state=TrainState(rng_state=state)).save(tmp_path / "c.pt")
    random.random(), np.random.rand(), torch.rand(1)
    restored = Checkpoint.load(tmp_path / "c.pt").train_state.rng_state
    assert restored is not None
    restore_rng_state(restored)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
