"""Fine-tuning from pretrained weights: heads fresh, everything else copied, mismatches listed, nothing unpickled."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import LABELS, dataset_dict, make_nnunet_model_folder, plans_dict  # noqa: E402

from nnseg.checkpoint import Checkpoint  # noqa: E402
from nnseg.dataset import DatasetSpec  # noqa: E402
from nnseg.errors import CheckpointError  # noqa: E402
from nnseg.network import build_network  # noqa: E402
from nnseg.planning import Plans  # noqa: E402
from nnseg.training._pretrained import is_segmentation_head, load_pretrained_weights  # noqa: E402


def _network(labels: dict[str, object], *, seed: int, **plan_options: object) -> torch.nn.Module:
    plans = plans_dict(**plan_options)  # type: ignore[arg-type]
    plan = Plans.from_json(plans)[next(iter(plans["configurations"]))]
    torch.manual_seed(seed)
    return build_network(plan.architecture, num_input_channels=1,
                         num_outputs=DatasetSpec.from_dict(dataset_dict(labels)).num_segmentation_heads,
                         deep_supervision=True)  # fmt: skip


@pytest.mark.parametrize("source", ["nnseg", "nnunet"])
def test_heads_stay_fresh_and_everything_else_is_copied(tmp_path: Path, source: str) -> None:
    if source == "nnunet":
        path = make_nnunet_model_folder(tmp_path / "m", seed=3) / "fold_0" / "checkpoint_final.pth"
        pretrained = torch.load(path, weights_only=False)["network_weights"]
    else:
        pretrained = {f"module.{k}": v for k, v in _network(LABELS, seed=3).state_dict().items()}  # DDP names
        path = tmp_path / "checkpoint_final.pt"
        Checkpoint(pretrained).save(path)
        pretrained = {k.removeprefix("module."): v for k, v in pretrained.items()}
    five_labels = {"background": 0, "a": 1, "b": 2, "c": 3, "d": 4}
    network = _network(five_labels, seed=7)
    fresh = {k: v.clone() for k, v in network.state_dict().items()}
    transfer = load_pretrained_weights(network, path)
    after = network.state_dict()
    assert transfer.kept_fresh
    assert all(is_segmentation_head(name) for name in transfer.kept_fresh)
    assert set(transfer.copied) | set(transfer.kept_fresh) == set(after)
    for name in transfer.copied:
        torch.testing.assert_close(after[name], pretrained[name], rtol=0, atol=0)
    for name in transfer.kept_fresh:
        torch.testing.assert_close(after[name], fresh[name], rtol=0, atol=0)
    assert not any(torch.equal(after[n], fresh[n]) for n in transfer.copied if n.endswith("conv.weight"))


def test_another_architecture_lists_every_differing_parameter(tmp_path: Path) -> None:
    path = tmp_path / "deeper.pt"
    Checkpoint(_network(LABELS, seed=0, stages=3).state_dict()).save(path)
    network = _network(LABELS, seed=0, stages=2)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(
        CheckpointError, match=r"do not fit this network \(\d+ differing parameter\(s\)\): .*decoder"
    ) as info:
        load_pretrained_weights(network, path)
    assert "only the segmentation heads may differ" in str(info.value)
    for name, value in network.state_dict().items():
        assert torch.equal(value, before[name])  # unchanged


def test_another_patch_dimensionality_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two_d.pt"
    Checkpoint(_network(LABELS, seed=0, patch=(16, 16)).state_dict()).save(path)
    with pytest.raises(
        CheckpointError,
        match=r"encoder\.stages\.0\.0\.convs\.0\.conv\.weight: \(4, 1, 3, 3\) in the checkpoint, \(4, 1, 3, 3, 3\) here",
    ):
        load_pretrained_weights(_network(LABELS, seed=0), path)


def test_truncated_missing_and_pickled_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "good.pt"
    Checkpoint(_network(LABELS, seed=0).state_dict()).save(path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"pretrained weights .*truncated.pt cannot be loaded safely"):
        load_pretrained_weights(_network(LABELS, seed=0), truncated)
    with pytest.raises(CheckpointError, match="do not exist"):
        load_pretrained_weights(_network(LABELS, seed=0), tmp_path / "nope.pt")
    pickled = tmp_path / "pickled.pt"
    torch.save({"network_weights": {}, "payload": np.random.default_rng(0)}, pickled)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_pretrained_weights(_network(LABELS, seed=0), pickled)
    empty = tmp_path / "empty.pt"
    torch.save({"step": 3}, empty)
    with pytest.raises(CheckpointError, match="hold no 'network_weights'"):
        load_pretrained_weights(_network(LABELS, seed=0), empty)
