"""The cascade's one-hot input and its two augmentations: layout, probabilities, 0/1 values, image untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.errors import ConfigError
from nnseg.training._augmentation import AugmentationConfig
from nnseg.training._batches import BatchFactory
from nnseg.training._cascade_augment import (
    CascadeAugmentation,
    CascadeBatchFactory,
    ball,
    random_binary_operator,
    remove_random_component,
)
from nnseg.training._sampling import PatchSampler


def _onehot(seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    seg = np.zeros((12, 12, 12), np.int16)
    seg[2:5, 2:5, 2:5], seg[7:10, 6:11, 1:4], seg[1:3, 8:11, 8:11] = 1, 2, 1
    seg[rng.random(seg.shape) < 0.02] = 2
    return CascadeAugmentation(labels=(1, 2)).one_hot(torch.from_numpy(seg))


def test_one_hot_channel_k_is_label_k() -> None:
    seg = torch.tensor([[[-1, 0, 1, 2, 3]]], dtype=torch.int16)
    onehot = CascadeAugmentation(labels=(1, 3)).one_hot(seg)
    assert onehot.shape == (2, 1, 1, 5)
    assert onehot[:, 0, 0].tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]


def test_ball_radius() -> None:
    assert ball(1.0, 3).sum() == 7
    assert ball(1.5, 2).sum() == 9


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_transforms_keep_zero_one_and_exclusive_channels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    onehot = _onehot(seed % 7)
    assert onehot.sum(0).max() <= 1
    out = remove_random_component(random_binary_operator(onehot.clone(), rng, p_per_label=1.0), rng, p_per_label=1.0)
    assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
    assert out.sum(0).max() <= 1  # a voxel one channel gains is taken from the others


@pytest.mark.parametrize(("step", "expected"), [("binary", 0.4), ("component", 0.2)])
def test_each_step_fires_with_its_probability(step: str, expected: float) -> None:
    base = CascadeAugmentation(labels=(1, 2), p_per_label=1.0)
    only = CascadeAugmentation(labels=(1, 2), p_per_label=1.0, p_binary_operator=0.4 if step == "binary" else 0.0,
                               p_remove_component=0.2 if step == "component" else 0.0)  # fmt: skip
    assert base.p_binary_operator == 0.4
    assert base.p_remove_component == 0.2
    onehot, fired, n = _onehot(0), 0, 400
    for seed in range(n):
        fired += int(not torch.equal(only(onehot.clone(), np.random.default_rng(seed)), onehot))
    assert abs(fired / n - expected) < 0.07


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="p_binary_operator"):
        CascadeAugmentation(labels=(1,), p_binary_operator=1.5)


def test_cascade_batches_are_deterministic_and_keep_the_image(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plan, spec = make_plan(), make_spec()
    cases = {f"c{i}": threshold_case((18, 20, 20), seed=i) for i in range(2)}
    store = write_store(tmp_path / "store", plan, spec, cases)
    previous = {k: np.asarray(s, np.uint8) for k, (_, s) in cases.items()}  # the label itself as previous stage
    sampler = PatchSampler(plan.patch_size, batch_size=2)
    no_aug = AugmentationConfig(p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                                p_low_resolution=0, p_gamma=0, p_gamma_inverted=0, p_mirror_per_axis=0)  # fmt: skip
    plain = BatchFactory(store, tuple(cases), sampler, no_aug, seed=3, augment=False)
    cascade = CascadeBatchFactory(plain, lambda c, s: previous[c][(slice(None), *s)], CascadeAugmentation((1, 2)))
    a, b = cascade(5), cascade(5)
    assert torch.equal(a.data, b.data)
    assert a.data.shape[1] == 3
    assert torch.equal(a.data[:, :1], plain(5).data)  # the image channels are the plain batch's
    target = a.target[0][:, 0]
    assert torch.equal(a.data[:, 1] == 1, target == 1)
    assert torch.equal(a.data[:, 2] == 1, target == 2)
