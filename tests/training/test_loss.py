"""Losses: hand-checked values, masking, deep-supervision weights, and parity with nnU-Net's losses."""

from __future__ import annotations

import pytest
import torch

from nnseg.errors import ConfigError
from nnseg.losses import (
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceCELoss,
    SoftDiceLoss,
    deep_supervision_weights,
)


def _batch(seed: int, classes: int = 3, shape: tuple[int, ...] = (2, 6, 7, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=gen)
    target = torch.randint(0, classes, (shape[0], 1, *shape[1:]), generator=gen)
    return logits, target


def test_dice_of_a_perfect_prediction_is_minus_one() -> None:
    onehot = torch.zeros(2, 2, 4, 4)
    onehot[:, 0, :2] = 1
    onehot[:, 1, 2:] = 1
    assert SoftDiceLoss(batch_dice=False)(onehot, onehot).item() == pytest.approx(-1.0, abs=1e-6)


def test_dice_by_hand() -> None:
    probs = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])  # (b=1, c=1, 4)
    onehot = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    expected = (2 * 0.5 + 1e-5) / (1 + 1 + 1e-5)
    assert SoftDiceLoss(batch_dice=False)(probs, onehot).item() == pytest.approx(-expected)


def test_batch_dice_pools_the_batch() -> None:
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])  # sample 2 predicts nothing, has no foreground
    onehot = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    pooled = SoftDiceLoss(batch_dice=True)(probs, onehot).item()
    per_sample = SoftDiceLoss(batch_dice=False)(probs, onehot).item()
    assert pooled == pytest.approx(-1.0, abs=1e-5)
    assert per_sample == pytest.approx(-1.0, abs=1e-5)  # empty sample: smooth / smooth = 1


def test_ignore_label_voxels_do_not_change_the_loss() -> None:
    logits, target = _batch(0)
    target[:, :, :2] = 3  # ignore label
    loss = DiceCELoss(batch_dice=True, ignore_label=3)
    base = loss(logits, target)
    changed = logits.clone()
    changed[:, :, :2] = torch.randn_like(changed[:, :, :2]) * 10
    assert loss(changed, target).item() == pytest.approx(base.item(), abs=1e-6)


def test_fully_ignored_batch_has_no_ce_term() -> None:
    logits, _ = _batch(1)
    target = torch.full((2, 1, 6, 7, 5), 3)
    value = DiceCELoss(batch_dice=False, ignore_label=3)(logits, target)
    assert torch.isfinite(value)
    assert value.item() == pytest.approx(-1.0, abs=1e-4)  # only the smoothed Dice of empty classes remains


def test_deep_supervision_weights_match_nnunet() -> None:
    assert [round(w, 3) for w in deep_supervision_weights(5)] == [0.533, 0.267, 0.133, 0.067, 0.0]
    assert deep_supervision_weights(1) == (1.0,)
    assert sum(deep_supervision_weights(7)) == pytest.approx(1.0)
    with pytest.raises(
        ConfigError,
        match=r"deep_supervision_weights: num_outputs must be an integer >= 1; got 0\. Set num_outputs=1 or more",
    ):
        deep_supervision_weights(0)


def test_deep_supervision_skips_zero_weights_and_checks_lengths() -> None:
    calls: list[int] = []

    class Counting(torch.nn.Module):
        def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            calls.append(output.shape[-1])
            return output.sum() * 0 + 1.0

    wrapped = DeepSupervisionLoss(Counting(), deep_supervision_weights(3))
    outs = [torch.zeros(1, 2, 8), torch.zeros(1, 2, 4), torch.zeros(1, 2, 2)]
    assert wrapped(outs, outs).item() == pytest.approx(1.0)
    assert calls == [8, 4]
    with pytest.raises(ConfigError, match=r"got 2 output\(s\) and 3 target\(s\) for 3 weight\(s\)"):
        wrapped(outs[:2], outs)


def test_gradients_flow_to_the_logits() -> None:
    logits, target = _batch(2)
    logits.requires_grad_(True)
    DiceCELoss(batch_dice=False)(logits, target).backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum() > 0


@pytest.mark.parity
@pytest.mark.parametrize("batch_dice", [True, False])
@pytest.mark.parametrize("ignore_label", [None, 3])
def test_dice_ce_equals_nnunet(batch_dice: bool, ignore_label: int | None) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    logits, target = _batch(3, classes=3)
    if ignore_label is not None:
        target[0, :, :3] = ignore_label
    reference = DC_and_CE_loss(
        {"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1, weight_dice=1,
        ignore_label=ignore_label, dice_class=MemoryEfficientSoftDiceLoss,
    )  # fmt: skip
    ours = DiceCELoss(batch_dice=batch_dice, ignore_label=ignore_label)
    assert ours(logits, target).item() == pytest.approx(reference(logits, target.float()).item(), abs=1e-6)


@pytest.mark.parity
@pytest.mark.parametrize("ignore", [False, True])
def test_dice_bce_equals_nnunet(ignore: bool) -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 2, 5, 6, 4, generator=gen)
    target = torch.rand(2, 3 if ignore else 2, 5, 6, 4, generator=gen) > 0.6
    reference = DC_and_BCE_loss(
        {}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False}, use_ignore_label=ignore,
        dice_class=MemoryEfficientSoftDiceLoss,
    )  # fmt: skip
    ours = DiceBCELoss(batch_dice=True, has_ignore_channel=ignore)
    assert ours(logits, target).item() == pytest.approx(reference(logits, target).item(), abs=1e-6)


@pytest.mark.parity
def test_deep_supervision_equals_nnunet() -> None:
    pytest.importorskip("nnunetv2")
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    weights = deep_supervision_weights(3)
    outs, targets = zip(*(_batch(10 + i, shape=(2, 8 // 2**i, 8 // 2**i, 4)) for i in range(3)), strict=True)
    base = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          dice_class=MemoryEfficientSoftDiceLoss)  # fmt: skip
    reference = DeepSupervisionWrapper(base, list(weights))
    ours = DeepSupervisionLoss(DiceCELoss(batch_dice=False), weights)
    expected = reference(list(outs), [t.float() for t in targets]).item()
    assert ours(list(outs), list(targets)).item() == pytest.approx(expected, abs=1e-6)
