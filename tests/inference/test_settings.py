"""InferenceSettings (validation, JSON, manifests), the accumulator seam, and the deprecation shims."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import nnseg.inference
from nnseg.errors import ConfigError
from nnseg.inference import (
    Accumulator,
    ConstantAccumulator,
    Float16GaussianAccumulator,
    GaussianAccumulator,
    InferenceSettings,
    WeightedAccumulator,
    predict_logits,
)
from nnseg.inference._settings import upgrade_manifest_settings
from nnseg.inference._tiling import tile_slices


class _Constant(torch.nn.Module):
    """A fake network that writes one constant per output channel."""

    def __init__(self, values: tuple[float, ...]) -> None:
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.view(1, -1, *([1] * (x.ndim - 2))).expand(x.shape[0], -1, *x.shape[2:]).clone()


@pytest.mark.parametrize(("changes", "message"), [
    ({"tile_step_size": 0}, r"InferenceSettings: tile_step_size must be a number in \(0, 1\]; got 0. Leave it at its "
                            r"default \(0.5\)"),
    ({"tile_step_size": 1.5}, r"tile_step_size must be a number in \(0, 1\]; got 1.5"),
    ({"use_mirroring": 1}, r"InferenceSettings: use_mirroring must be True or False; got 1"),
    ({"mirror_axes": (0, 3)}, r"InferenceSettings: mirror_axes must be an integer in \[0, 2\]; got 3"),
    ({"mirror_axes": (1, 1)}, r"mirror_axes must not repeat an axis; got \(1, 1\)"),
    ({"mirror_axes": "012"}, r"mirror_axes must be None or a sequence of spatial axes"),
    ({"tile_batch_size": 0}, r"InferenceSettings: tile_batch_size must be an integer >= 1; got 0. Set tile_batch_size=1"),
    ({"accumulator": "gausian"}, r"InferenceSettings: accumulator must be one of 'gaussian', 'nnunet_float16', "
                                 r"'constant'; got 'gausian'. Did you mean 'gaussian'"),
    ({"accumulator": 3}, r"accumulator must be one of .* or an Accumulator instance; got 3"),
    ({"device": "gpu"}, r"InferenceSettings: device must be a torch device such as 'cpu', 'cuda' or 'cuda:1'; got 'gpu'"),
    ({"fallback_device": 0.5}, r"fallback_device must be a torch device .*; got 0.5"),
    ({"amp": "yes"}, r"InferenceSettings: amp must be True, False or None \(auto\); got 'yes'"),
    ({"optimize": None}, r"InferenceSettings: optimize must be True or False; got None"),
    ({"save_probabilities": "no"}, r"save_probabilities must be True or False; got 'no'"),
])  # fmt: skip
def test_bad_values_name_the_field_the_rule_and_the_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InferenceSettings(**changes)


def test_json_round_trip_presets_and_refusals() -> None:
    settings = InferenceSettings(tile_step_size=0.25, mirror_axes=[2, 0], tile_batch_size=2, device=torch.device("cpu"),
                                 accumulator="constant", save_probabilities=True)  # fmt: skip
    assert settings.mirror_axes == (2, 0)
    assert settings.device == "cpu"
    assert isinstance(settings.accumulator, ConstantAccumulator)
    assert InferenceSettings.from_json(settings.to_json()) == settings
    exact = InferenceSettings().with_nnunet_numerics()
    assert (exact.accumulator, exact.tile_batch_size, exact.optimize) == (Float16GaussianAccumulator(), 1, False)
    assert InferenceSettings().batch_size == 4
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['step'\]; expected some of"):
        InferenceSettings.from_json({"step": 0.5})
    with pytest.raises(ConfigError, match=r"format_version 9 is newer than this nnseg reads \(1\); upgrade nnseg"):
        InferenceSettings.from_json({"format_version": 9})


def test_mirror_axes_resolution_and_manifest_fields() -> None:
    assert InferenceSettings().resolved_mirror_axes((0, 1)) == (0, 1)
    assert InferenceSettings(mirror_axes=(2,)).resolved_mirror_axes((0, 1, 2)) == (2,)
    assert InferenceSettings(use_mirroring=False, mirror_axes=(2,)).resolved_mirror_axes((0, 1, 2)) == ()
    assert InferenceSettings().manifest_json((0, 1, 2)) == {
        "mirror_axes": [0, 1, 2],
        "tile_step_size": 0.5,
        "accumulator": "gaussian",
        "save_probabilities": False,
    }
    # manifests of nnseg 0.x name the same settings differently; they are read in the new form
    old = {"mirror_axes": [0, 1, 2], "step_size": 0.5, "use_gaussian": True, "accumulation_dtype": "torch.float16",
           "file_ending": ".nii.gz", "save_probabilities": False}  # fmt: skip
    assert upgrade_manifest_settings(old) == {"mirror_axes": [0, 1, 2], "tile_step_size": 0.5,
                                              "accumulator": "nnunet_float16", "file_ending": ".nii.gz",
                                              "save_probabilities": False}  # fmt: skip


@pytest.mark.parametrize("accumulator", ["constant", ConstantAccumulator()])
def test_a_constant_network_is_stitched_into_exactly_that_constant(accumulator: str | Accumulator) -> None:
    values = (1.5, -2.25, 7.0)  # exact in binary: sums of unit-weighted copies and their mean are exact
    data = torch.randn(2, 7, 19, 30)
    settings = InferenceSettings(accumulator=accumulator, tile_step_size=0.3)
    logits = predict_logits(_Constant(values), data, (4, 8, 8), 3, settings)
    assert logits.shape == (3, *data.shape[1:])
    for channel, value in enumerate(values):
        assert torch.equal(logits[channel], torch.full(data.shape[1:], value))


def test_constant_weights_give_the_plain_average_of_the_tiles() -> None:
    """Two tiles [0, 8) and [4, 12) whose outputs are their input means (3.5 and 7.5): the overlap averages them."""

    class TileMean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3, 4), keepdim=True).expand_as(x).clone()

    data = torch.arange(12.0).view(1, 1, 1, 12)
    settings = InferenceSettings(use_mirroring=False, accumulator="constant")
    constant = predict_logits(TileMean(), data, (1, 1, 8), 1, settings)
    assert torch.equal(constant[0, 0, 0], torch.tensor([3.5] * 4 + [5.5] * 4 + [7.5] * 4))
    gaussian = predict_logits(TileMean(), data, (1, 1, 8), 1, dataclasses.replace(settings, accumulator="gaussian"))
    assert not torch.equal(gaussian, constant)  # the Gaussian favours each tile's centre


class _Counting(WeightedAccumulator):
    """A custom weighting (heavier centre line) that also counts the tiles it receives."""

    name = "counting"
    tiles = 0

    def tile_weight(self, patch_size: tuple[int, ...]) -> np.ndarray:
        weight = np.ones(patch_size, np.float32)
        weight[..., patch_size[-1] // 2] = 2.0
        return weight

    def add(self, slices: tuple[slice, ...], logits: torch.Tensor) -> None:
        self.tiles += 1
        super().add(slices, logits)

    def result(self) -> torch.Tensor:
        type(self).tiles = self.tiles  # the prototype stays untouched; the class records the last case
        return super().result()


def test_a_custom_accumulator_instance_is_copied_for_each_case() -> None:
    prototype = _Counting()
    settings = InferenceSettings(use_mirroring=False, accumulator=prototype)
    logits = predict_logits(_Constant((0.5,)), torch.zeros(1, 8, 12, 20), (8, 8, 8), 1, settings)
    assert torch.equal(logits, torch.full((1, 8, 12, 20), 0.5))
    assert _Counting.tiles == len(list(tile_slices((8, 12, 20), (8, 8, 8), 0.5)))
    assert vars(prototype) == {}  # buffers live in the per-case copy
    assert settings.to_json()["accumulator"] == "counting"
    with pytest.raises(ConfigError, match=r"accumulator must be one of 'gaussian', .*; got 'counting'"):
        InferenceSettings.from_json(settings.to_json())
    assert InferenceSettings.from_json(settings.to_json(), accumulators={"counting": prototype}) == settings


def test_old_sliding_window_keywords_still_work_with_a_warning() -> None:
    net, data = _Constant((1.0, 2.0)), torch.zeros(1, 8, 8, 8)
    with pytest.warns(DeprecationWarning, match=r"predict_logits: the keyword argument\(s\) \['accumulation_dtype', "
                                                 r"'batch_size', 'mirror_axes'\] are deprecated.*settings=Inference"):  # fmt: skip
        old = predict_logits(
            net, data, (8, 8, 8), 2, mirror_axes=(0, 1), accumulation_dtype=torch.float16, batch_size=1
        )
    new = predict_logits(net, data, (8, 8, 8), 2, InferenceSettings(mirror_axes=(0, 1)).with_nnunet_numerics())
    assert torch.equal(old, new)
    with pytest.warns(DeprecationWarning, match=r"predict_logits without settings is deprecated"):
        predict_logits(net, data, (8, 8, 8), 2)
    with pytest.raises(ConfigError, match=r"pass either settings=InferenceSettings\(...\) or the deprecated keyword"):
        predict_logits(net, data, (8, 8, 8), 2, InferenceSettings(), step_size=0.5)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['tile_step'\]"):
        predict_logits(net, data, (8, 8, 8), 2, tile_step=0.5)
    with pytest.raises(
        ConfigError, match=r"accumulation_dtype must be torch.float32 or torch.float16; got torch.int32"
    ):
        predict_logits(net, data, (8, 8, 8), 2, accumulation_dtype=torch.int32)


def test_names_dropped_from_the_package_still_import_with_a_warning() -> None:
    from nnseg.inference._tiling import tile_positions

    with pytest.warns(DeprecationWarning, match=r"nnseg.inference.tile_positions is deprecated .* use "
                                                 r"nnseg.inference._tiling.tile_positions"):  # fmt: skip
        assert nnseg.inference.tile_positions is tile_positions
    with pytest.warns(
        DeprecationWarning, match=r"nnseg.inference.predict_folder is deprecated .* use Predictor.predict_folder"
    ):
        from nnseg.inference import predict_folder  # noqa: F401
    with pytest.raises(AttributeError, match=r"has no attribute 'nothing'"):
        nnseg.inference.nothing  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in nnseg.inference.__all__:  # the public names import without a warning
            getattr(nnseg.inference, name)


def test_settings_are_frozen_and_equal_by_value() -> None:
    settings = InferenceSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.device = "cuda"  # type: ignore[misc]
    assert settings == InferenceSettings(accumulator=GaussianAccumulator())
    assert settings != InferenceSettings(accumulator="constant")
