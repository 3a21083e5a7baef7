"""Checkpoints: atomic round trip, safe loading, corrupted files, wrapper prefixes, and RNG state."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nnseg.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from nnseg.errors import CheckpointError


def _payload() -> dict[str, object]:
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "step": 7,
        "rng_state": capture_rng_state(),
        "config": {"num_epochs": 2, "amp": None},
    }


def test_round_trip(tmp_path: Path) -> None:
    payload = _payload()
    path = tmp_path / "run" / "checkpoint_latest.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    assert loaded["format_version"] == 1
    assert loaded["step"] == 7
    assert loaded["config"] == {"num_epochs": 2, "amp": None}
    for name, tensor in payload["network_weights"].items():  # type: ignore[attr-defined]
        assert torch.equal(loaded["network_weights"][name], tensor)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_unsafe_values_are_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    with pytest.raises(CheckpointError, match=r"a safe load \(weights_only=True\) refuses"):
        save_checkpoint(path, {"network_weights": {}, "step": 0, "extra": Path("x")})
    assert not path.exists()


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing key\(s\) \['step'\]"):
        save_checkpoint(tmp_path / "c.pt", {"network_weights": {}})


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_files_give_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload())
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"cannot be read .*truncated, corrupted or not a safe nnseg checkpoint"):
        load_checkpoint(path)


def test_missing_file_and_foreign_content(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not exist; expected a file written by nnseg's trainer"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"network_weights": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"is not an nnseg checkpoint \(no 'format_version' key\)"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format_version": 99, "network_weights": {}, "step": 0}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match=r"format_version 99; this nnseg reads up to 1"):
        load_checkpoint(tmp_path / "new.pt")


def test_wrapper_prefixes_are_removed() -> None:
    weights = {"module._orig_mod.conv.weight": torch.ones(1), "_orig_mod.module.bias": torch.zeros(1), "plain": torch.ones(2)}
    assert sorted(strip_wrapper_prefixes(weights)) == ["bias", "conv.weight", "plain"]


def test_rng_state_restores_every_generator(tmp_path: Path) -> None:
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    save_checkpoint(tmp_path / "c.pt", {"network_weights": {}, "step": 0, "rng_state": state})
    random.random(), np.random.rand(), torch.rand(1)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
