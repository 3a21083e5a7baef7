"""make_plans_json: a hand-made nnU-Net plans dict that loads and builds a network."""

from __future__ import annotations

import pytest

from nnseg.errors import ConfigError
from nnseg.network import build_network
from nnseg.planning import Plans
from nnseg.testing import make_plans_json


def test_3d_plans_load_and_build() -> None:
    plan = Plans.from_json(make_plans_json((16, 32, 32), features=(4, 8), instance_norm=True))["3d_fullres"]
    assert (plan.patch_size, plan.num_stages, plan.batch_size) == ((16, 32, 32), 2, 2)
    assert plan.architecture.arch_kwargs["strides"] == ((1, 1, 1), (2, 2, 2))
    network = build_network(plan.architecture, num_input_channels=1, num_outputs=3, deep_supervision=False)
    assert sum(p.numel() for p in network.parameters()) > 0


def test_2d_plans_with_transpose_and_channels() -> None:
    data = make_plans_json((32, 32), name="2d", schemes=("CTNormalization", "ZScoreNormalization"),
                           use_mask=(False, True), transpose=(2, 0, 1))  # fmt: skip
    plan = Plans.from_json(data)["2d"]
    assert plan.is_2d
    assert plan.transpose_backward == (1, 2, 0)
    assert sorted(plan.foreground_intensity_properties_per_channel) == ["0", "1"]
    assert data["original_median_shape_after_transp"] == [32, 32, 32]


def test_bad_convs_per_stage_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"make_plans_json: convs_per_stage must be an integer >= 1; got 0"):
        make_plans_json((16, 16, 16), convs_per_stage=0)
