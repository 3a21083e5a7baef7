"""Plans and ConfigurationPlan: nnU-Net v2 plans.json in and out, inheritance, hashes, errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import PlansError
from nnseg.planning import ArchitecturePlan, ConfigurationPlan, MemoryReport, Plans

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "nnUNetPlans.json"


def _without_version(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    assert data.pop("nnseg_format_version") == 1
    return data


@pytest.fixture
def raw() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def plans(raw: dict[str, Any]) -> Plans:
    return Plans.from_json(raw)


def test_load_gives_typed_configuration() -> None:
    plans = Plans.load(FIXTURE)
    assert plans.configuration_names == ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")
    assert plans.source == str(FIXTURE)
    full = plans["3d_fullres"]
    assert full == plans.configuration("3d_fullres")
    assert (full.name, full.batch_size, full.patch_size) == ("3d_fullres", 2, (128, 128, 128))
    assert full.spacing == (1.0, 0.767578125, 0.767578125)
    assert full.normalization_schemes == ("CTNormalization",)
    assert full.use_mask_for_norm == (False,)
    assert full.resampling_fn_data_kwargs["order"] == 3
    assert full.architecture.network_class_name.endswith("unet.PlainConvUNet")
    assert full.architecture.kw_requires_import == ("conv_op", "norm_op", "dropout_op", "nonlin")
    assert (full.ndim, full.is_2d, full.num_stages) == (3, False, 6)
    assert (full.transpose_forward, full.plans_name, full.dataset_name) == (
        (0, 1, 2),
        "nnUNetPlans",
        "Dataset003_Liver",
    )
    assert full.image_reader_writer == "SimpleITKIO"
    assert full.foreground_intensity_properties_per_channel["0"]["percentile_99_5"] == 197.0
    assert (plans["2d"].ndim, plans["2d"].is_2d, plans["2d"].num_stages) == (2, True, 8)
    assert plans["3d_lowres"].next_stages == ("3d_cascade_fullres",)
    assert "3d_lowres" in plans
    assert "3d_midres" not in plans


def test_round_trip_is_exact(raw: dict[str, Any], tmp_path: Path) -> None:
    plans = Plans.from_json(raw)
    assert _without_version(plans.to_json()) == raw
    plans.save(tmp_path / "plans.json")
    again = Plans.load(tmp_path / "plans.json")
    assert again == plans
    assert _without_version(json.loads((tmp_path / "plans.json").read_text())) == raw
    assert list(again.to_json()) == [*raw, "nnseg_format_version"]  # nnU-Net's key order


def test_inherits_from_resolves_child_over_parent(raw: dict[str, Any]) -> None:
    raw["configurations"]["3d_cascade_bs4"] = {"inherits_from": "3d_cascade_fullres", "batch_size": 4}
    plans = Plans.from_json(raw)
    full, cascade, custom = plans["3d_fullres"], plans["3d_cascade_fullres"], plans["3d_cascade_bs4"]
    assert cascade == dataclasses.replace(full, name="3d_cascade_fullres", previous_stage="3d_lowres")
    assert custom == dataclasses.replace(cascade, name="3d_cascade_bs4", batch_size=4)
    assert plans.configurations["3d_cascade_bs4"] == {"inherits_from": "3d_cascade_fullres", "batch_size": 4}
    assert "inherits_from" not in custom.to_json()


def test_configuration_to_json_is_the_nnunet_dict(plans: Plans, raw: dict[str, Any]) -> None:
    for name in ("2d", "3d_lowres", "3d_fullres"):
        assert plans[name].to_json() == raw["configurations"][name]
    expected = {**raw["configurations"]["3d_fullres"], "previous_stage": "3d_lowres"}
    assert plans["3d_cascade_fullres"].to_json() == expected
    json.dumps(plans["2d"].to_json())  # plain JSON types only


def test_standalone_configuration_round_trip(plans: Plans, tmp_path: Path) -> None:
    full = plans["3d_fullres"]
    assert ConfigurationPlan.from_json(full.to_json(standalone=True)) == full
    full.save(tmp_path / "cfg.json")
    assert ConfigurationPlan.load(tmp_path / "cfg.json") == full
    assert "nnseg_plans_context" not in full.to_json()


def test_memory_report_round_trips_through_plans(plans: Plans, tmp_path: Path) -> None:
    report = MemoryReport(estimate=4.5e8, budget=5.6e8, gpu_memory_gb=8.0, measured_bytes=7_000_000_000,
                          measured_device="cuda:0", measurement_method="torch.cuda.max_memory_allocated",
                          note="bs 2, AMP")  # fmt: skip
    assert MemoryReport.from_json(report.to_json()) == report
    assert report.fraction_of_budget == pytest.approx(4.5 / 5.6)
    updated = plans.replace_configuration("3d_fullres", dataclasses.replace(plans["3d_fullres"], memory_report=report))
    assert updated.to_json()["configurations"]["3d_fullres"]["nnseg_memory_report"]["measured_device"] == "cuda:0"
    assert updated["3d_cascade_fullres"].memory_report == report  # inherited like any key
    updated.save(tmp_path / "p.json")
    assert Plans.load(tmp_path / "p.json")["3d_fullres"].memory_report == report
    assert plans["3d_fullres"].memory_report is None
    bare = MemoryReport.from_json({"estimate": 1, "budget": 2, "gpu_memory_gb": 8})
    assert (bare.measured_bytes, bare.measured_device, bare.note) == (None, None, "")


def test_unknown_keys_survive_a_round_trip(raw: dict[str, Any]) -> None:
    raw["my_note"] = {"by": "me"}
    raw["configurations"]["3d_fullres"]["custom_flag"] = [1, 2]
    raw["configurations"]["3d_fullres"]["architecture"]["comment"] = "x"
    plans = Plans.from_json(raw)
    assert plans.extra["my_note"]["by"] == "me"
    assert plans["3d_fullres"].extra["custom_flag"] == (1, 2)
    assert plans["3d_fullres"].architecture.extra["comment"] == "x"
    assert _without_version(plans.to_json()) == raw


def test_numpy_values_become_plain_json(raw: dict[str, Any]) -> None:
    cfg = raw["configurations"]["3d_fullres"]
    cfg["batch_size"] = np.int64(2)
    cfg["patch_size"] = np.array([128, 128, 128])
    cfg["spacing"] = [np.float64(v) for v in cfg["spacing"]]
    cfg["use_mask_for_norm"] = [np.bool_(False)]
    raw["transpose_forward"] = (0, 1, 2)
    out = Plans.from_json(raw).to_json()
    assert _without_version(json.loads(json.dumps(out))) == json.loads(FIXTURE.read_text())


def test_plans_are_frozen_and_picklable(plans: Plans) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        plans.plans_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plans["3d_fullres"].architecture.arch_kwargs["n_stages"] = 3  # type: ignore[index]
    assert pickle.loads(pickle.dumps(plans)) == plans
    assert pickle.loads(pickle.dumps(plans["2d"])) == plans["2d"]
    assert copy.deepcopy(plans["2d"]) == plans["2d"]
    kwargs = plans["2d"].architecture.plain_arch_kwargs()
    kwargs["strides"].append([9, 9])
    assert kwargs["norm_op_kwargs"] == {"eps": 1e-05, "affine": True}
    assert len(plans["2d"].architecture.arch_kwargs["strides"]) == 8


def test_with_configurations_returns_new_plans(plans: Plans) -> None:
    bigger = dataclasses.replace(plans["3d_fullres"], batch_size=5)
    updated = plans.with_configurations({"3d_fullres": bigger, "3d_fullres_bs8": {"inherits_from": "3d_fullres",
                                                                                   "batch_size": 8}})  # fmt: skip
    assert plans["3d_fullres"].batch_size == 2
    assert updated["3d_fullres"].batch_size == 5
    assert updated["3d_cascade_fullres"].batch_size == 5
    assert updated["3d_fullres_bs8"].batch_size == 8
    assert updated.configuration_names[-1] == "3d_fullres_bs8"
    assert plans.replace_configuration("2d", plans["2d"]) == plans


def test_configuration_from_other_plans_is_rejected(plans: Plans) -> None:
    other = dataclasses.replace(plans["3d_fullres"], transpose_forward=(2, 0, 1), transpose_backward=(1, 2, 0))
    with pytest.raises(PlansError, match=r"configuration '3d_fullres' has transpose_forward=\[2, 0, 1\] but plans "
                                         r"'nnUNetPlans' of 'Dataset003_Liver' has \[0, 1, 2\]"):  # fmt: skip
        plans.replace_configuration("3d_fullres", other)
    with pytest.raises(PlansError, match=r"no configuration '3d_fulres' in plans 'nnUNetPlans' of 'Dataset003_Liver'"):
        plans.replace_configuration("3d_fulres", plans["3d_fullres"])


def _resenc_l_variant(raw: dict[str, Any]) -> dict[str, Any]:
    """The same dataset planned by ResEnc-L: same preprocessing, other patch, batch and network."""
    resenc = copy.deepcopy(raw)
    resenc["plans_name"] = "nnUNetResEncUNetLPlans"
    resenc["experiment_planner_used"] = "nnUNetPlannerResEncL"
    for name in ("2d", "3d_fullres"):
        cfg = resenc["configurations"][name]
        cfg["batch_size"] = 46 if name == "2d" else 3
        cfg["patch_size"] = [448, 448] if name == "2d" else [160, 224, 224]
        cfg["architecture"]["network_class_name"] = "dynamic_network_architectures.architectures.residual_unet." \
                                                    "ResidualEncoderUNet"  # fmt: skip
        kwargs = cfg["architecture"]["arch_kwargs"]
        kwargs["n_blocks_per_stage"] = kwargs.pop("n_conv_per_stage")
        kwargs["n_conv_per_stage_decoder"] = [1] * (kwargs["n_stages"] - 1)
    return resenc


def test_preprocessing_hash_is_shared_by_default_and_resenc_l(plans: Plans, raw: dict[str, Any]) -> None:
    resenc = Plans.from_json(_resenc_l_variant(raw))
    for name in ("2d", "3d_fullres"):
        assert resenc[name].preprocessing_hash() == plans[name].preprocessing_hash()
        assert resenc[name] != plans[name]
    assert resenc.content_hash() != plans.content_hash()
    assert len(plans["2d"].preprocessing_hash()) == 16
    assert plans["2d"].preprocessing_hash() != plans["3d_fullres"].preprocessing_hash()
    assert plans["3d_lowres"].preprocessing_hash() != plans["3d_fullres"].preprocessing_hash()


PREPROCESSING_CHANGES = {
    "spacing": {"spacing": (1.0, 0.8, 0.8)},
    "transpose": {"transpose_forward": (2, 0, 1), "transpose_backward": (1, 2, 0)},
    "normalization": {"normalization_schemes": ("ZScoreNormalization",)},
    "mask": {"use_mask_for_norm": (True,)},
    "data_fn": {"resampling_fn_data": "my_resampling"},
    "data_order": {"resampling_fn_data_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}},
    "seg_fn": {"resampling_fn_seg": "my_resampling"},
    "seg_sep_z": {"resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": True}},
    "ct_stats": {"foreground_intensity_properties_per_channel": {"0": {"mean": 1.0, "std": 2.0}}},
    "preprocessor": {"preprocessor_name": "MyPreprocessor"},
    "reader": {"image_reader_writer": "NibabelIO"},
}
OTHER_CHANGES = {
    "batch": {"batch_size": 7},
    "patch": {"patch_size": (64, 64, 64)},
    "batch_dice": {"batch_dice": False},
    "identifier": {"data_identifier": "elsewhere"},
    "probabilities": {"resampling_fn_probabilities_kwargs": {"order": 0}},
    "stages": {"next_stage": "x", "previous_stage": "y"},
    "names": {"plans_name": "Other", "dataset_name": "Dataset999_Other", "name": "renamed"},
    "memory": {"memory_report": MemoryReport(estimate=1.0, budget=2.0, gpu_memory_gb=8.0)},
    "network": {"architecture": ArchitecturePlan("my.Net", {"n_stages": 2}, ())},
}


@pytest.mark.parametrize("change", PREPROCESSING_CHANGES.values(), ids=PREPROCESSING_CHANGES)
def test_preprocessing_hash_changes_with_preprocessing_fields(plans: Plans, change: dict[str, Any]) -> None:
    full = plans["3d_fullres"]
    assert dataclasses.replace(full, **change).preprocessing_hash() != full.preprocessing_hash()


@pytest.mark.parametrize("change", OTHER_CHANGES.values(), ids=OTHER_CHANGES)
def test_preprocessing_hash_ignores_other_fields(plans: Plans, change: dict[str, Any]) -> None:
    full = plans["3d_fullres"]
    assert dataclasses.replace(full, **change).preprocessing_hash() == full.preprocessing_hash()


@settings(max_examples=25, deadline=None)
@given(spacing=st.tuples(*[st.floats(0.1, 10.0, allow_nan=False)] * 3), batch_size=st.integers(1, 64))
def test_hashes_survive_json_and_track_changes(spacing: tuple[float, ...], batch_size: int) -> None:
    plans = Plans.load(FIXTURE)
    full = dataclasses.replace(plans["3d_fullres"], spacing=spacing, batch_size=batch_size)
    updated = plans.replace_configuration("3d_fullres", full)
    reread = Plans.from_json(json.loads(json.dumps(updated.to_json())))
    assert reread.content_hash() == updated.content_hash()
    assert reread["3d_fullres"].preprocessing_hash() == full.preprocessing_hash()
    assert (updated.content_hash() == plans.content_hash()) == (updated == plans)
    same_spacing = full.spacing == plans["3d_fullres"].spacing
    assert (full.preprocessing_hash() == plans["3d_fullres"].preprocessing_hash()) == same_spacing


def test_content_hash_ignores_source_and_int_float_spelling(raw: dict[str, Any]) -> None:
    spelled = copy.deepcopy(raw)
    spelled["configurations"]["3d_fullres"]["spacing"] = [1, 0.767578125, 0.767578125]
    assert Plans.from_json(spelled, source="/a.json").content_hash() == Plans.from_json(raw).content_hash()
