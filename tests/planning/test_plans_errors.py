"""Every PlansError message, pinned; and nnU-Net's old configuration format."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nnseg.errors import NnsegError, PlansError
from nnseg.planning import ArchitecturePlan, ConfigurationPlan, MemoryReport, Plans

FIXTURE = Path(__file__).parent / "data" / "nnUNetPlans.json"


@pytest.fixture
def raw() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(data))
    return path


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlansError, match=r"plans file .*nope\.json does not exist; plan the dataset first"):
        Plans.load(tmp_path / "nope.json")


def test_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    path.write_text('{"dataset_name": "x",\n  oops}')
    with pytest.raises(PlansError, match=r"plans\.json is not valid JSON \(Expecting .* at line 2, column 3\)"):
        Plans.load(path)


def test_missing_keys_are_named(tmp_path: Path, raw: dict[str, Any]) -> None:
    del raw["transpose_backward"], raw["image_reader_writer"]
    path = _write(tmp_path, raw)
    with pytest.raises(PlansError, match=re.escape(f"{path}: plans lack key(s) ['image_reader_writer', "
                                                   "'transpose_backward']; an nnU-Net v2 plans file has")):  # fmt: skip
        Plans.load(path)


def test_not_a_plans_file(tmp_path: Path) -> None:
    dataset_json = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    with pytest.raises(PlansError, match=r"plans\.json: not an nnU-Net v2 plans file \(missing \['dataset_name', .*found "
                                         r"keys \['channel_names', 'file_ending', 'labels', 'numTraining'\]\)"):  # fmt: skip
        Plans.load(_write(tmp_path, dataset_json))
    with pytest.raises(PlansError, match=r"plans\.json: expected a JSON object with nnU-Net v2 plans, got list"):
        Plans.load(_write(tmp_path, [1, 2]))


def test_unsupported_formats(raw: dict[str, Any]) -> None:
    with pytest.raises(PlansError, match=r"plans: this is an nnU-Net v1 plans file, which nnseg does not read"):
        Plans.from_json({"plans_per_stage": {}, "num_stages": 1})
    with pytest.raises(
        PlansError, match=r"nnseg plans format version 99 is not supported \(this nnseg reads up to 1\)"
    ):
        Plans.from_json({**raw, "nnseg_format_version": 99})


def test_unknown_configuration_suggests_and_lists(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = _write(tmp_path, raw)
    plans = Plans.load(path)
    message = (
        f"no configuration '3d_fulres' in {path}. Did you mean '3d_fullres'? "
        "Available: '2d', '3d_cascade_fullres', '3d_fullres', '3d_lowres'."
    )
    with pytest.raises(PlansError, match=f"^{re.escape(message)}$"):
        plans["3d_fulres"]
    with pytest.raises(PlansError, match=r"^no configuration 'zzz' in .*\. Available: '2d', "):
        plans.configuration("zzz")
    with pytest.raises(ValueError, match="no configuration '3D_FULLRES'.*Did you mean '3d_fullres'"):
        plans["3D_FULLRES"]  # PlansError is a ValueError too


def test_inherits_from_cycle(raw: dict[str, Any]) -> None:
    raw["configurations"]["3d_fullres"]["inherits_from"] = "3d_cascade_fullres"
    message = (
        "configuration '3d_fullres' in plans 'nnUNetPlans' of 'Dataset003_Liver': 'inherits_from' forms a cycle ('3d_fullres' -> '3d_cascade_fullres' "
        "-> '3d_fullres'). Remove 'inherits_from' from one of these configurations."
    )
    with pytest.raises(PlansError, match=f"^{re.escape(message)}$"):
        Plans.from_json(raw)
    raw["configurations"]["3d_fullres"]["inherits_from"] = "3d_fullres"
    with pytest.raises(PlansError, match=r"forms a cycle \('3d_fullres' -> '3d_fullres'\)"):
        Plans.from_json(raw)


def test_inherits_from_missing_parent(raw: dict[str, Any]) -> None:
    raw["configurations"]["3d_cascade_fullres"]["inherits_from"] = "3d_fulres"
    message = (
        "configuration '3d_cascade_fullres' in plans 'nnUNetPlans' of 'Dataset003_Liver' inherits_from '3d_fulres', which does not exist. "
        "Did you mean '3d_fullres'? Available: '2d', '3d_cascade_fullres', '3d_fullres', '3d_lowres'."
    )
    with pytest.raises(PlansError, match=f"^{re.escape(message)}$"):
        Plans.from_json(raw)
    raw["configurations"]["3d_cascade_fullres"]["inherits_from"] = ["3d_fullres"]
    with pytest.raises(PlansError, match=r"'inherits_from' must be a configuration name, got \['3d_fullres'\]"):
        Plans.from_json(raw)


def test_configuration_missing_and_malformed_keys(raw: dict[str, Any]) -> None:
    cfg = raw["configurations"]["2d"]
    del cfg["batch_size"], cfg["patch_size"]
    with pytest.raises(
        PlansError,
        match=re.escape(
            "plans 'nnUNetPlans' of 'Dataset003_Liver': configuration '2d' lacks key(s) ['batch_size', 'patch_size']"
        ),
    ):
        Plans.from_json(raw)
    raw = json.loads(FIXTURE.read_text())
    raw["configurations"]["3d_fullres"]["batch_size"] = "two"
    with pytest.raises(PlansError, match=r"/x/plans\.json: configuration '3d_fullres': key 'batch_size' is malformed"):
        Plans.from_json(raw, source="/x/plans.json")
    raw["configurations"] = {"2d": [1]}
    with pytest.raises(
        PlansError, match=r"of 'Dataset003_Liver': 'configurations' must map configuration names to dicts"
    ):
        Plans.from_json(raw)


def test_inconsistent_configuration(raw: dict[str, Any]) -> None:
    raw["configurations"]["3d_fullres"]["spacing"] = [1.0, 1.0]
    with pytest.raises(PlansError, match=r"configuration '3d_fullres' of plans 'nnUNetPlans': spacing \[1\.0, 1\.0\] has "
                                         r"2 axes but patch_size \[128, 128, 128\] has 3"):  # fmt: skip
        Plans.from_json(raw)
    raw = json.loads(FIXTURE.read_text())
    raw["transpose_forward"] = [0, 2, 1]
    with pytest.raises(PlansError, match=r"transpose_forward \[0, 2, 1\] and transpose_backward \[0, 1, 2\] must be "
                                         r"inverse permutations"):  # fmt: skip
        Plans.from_json(raw)
    raw = json.loads(FIXTURE.read_text())
    raw["configurations"]["2d"]["use_mask_for_norm"] = [False, True]
    with pytest.raises(PlansError, match=r"1 normalization_schemes but 2 use_mask_for_norm flags"):
        Plans.from_json(raw)


def test_architecture_and_memory_report_errors(raw: dict[str, Any]) -> None:
    del raw["configurations"]["2d"]["architecture"]["arch_kwargs"]
    with pytest.raises(
        PlansError, match=r"of 'Dataset003_Liver' \[2d\]: 'architecture' lacks key\(s\) \['arch_kwargs'\]"
    ):
        Plans.from_json(raw)
    with pytest.raises(PlansError, match=r"x: memory report lacks key\(s\) \['budget', 'gpu_memory_gb'\]"):
        MemoryReport.from_json({"estimate": 1.0}, where="x")
    with pytest.raises(PlansError, match=r"architecture: 'arch_kwargs' must be a dict, got list"):
        ArchitecturePlan.from_json({"network_class_name": "a.B", "arch_kwargs": []})


def test_standalone_configuration_errors(tmp_path: Path, raw: dict[str, Any]) -> None:
    cfg = raw["configurations"]["3d_fullres"]
    with pytest.raises(PlansError, match=r"no configuration name given; pass name=\.\.\."):
        ConfigurationPlan.from_json(cfg)
    with pytest.raises(PlansError, match=r"configuration '3d_fullres' has no plans-level facts; pass plans="):
        ConfigurationPlan.from_json(cfg, name="3d_fullres")
    with pytest.raises(PlansError, match=r"plans-level key\(s\) \['plans_name', 'dataset_name'\] are missing"):
        ConfigurationPlan.from_json(cfg, name="3d_fullres", plans={k: v for k, v in raw.items() if "name" not in k})
    assert ConfigurationPlan.from_json(cfg, name="3d_fullres", plans=raw) == Plans.from_json(raw)["3d_fullres"]
    with pytest.raises(PlansError, match=r"configuration file .*cfg\.json does not exist"):
        ConfigurationPlan.load(tmp_path / "cfg.json")


def test_errors_are_nnseg_errors() -> None:
    with pytest.raises(NnsegError):
        Plans.from_json({})


def _legacy(raw: dict[str, Any], name: str, class_name: str = "PlainConvUNet") -> dict[str, Any]:
    cfg = raw["configurations"][name]
    kwargs = cfg.pop("architecture")["arch_kwargs"]
    cfg.update(
        UNet_class_name=class_name,
        UNet_base_num_features=32,
        unet_max_num_features=kwargs["features_per_stage"][-1],
        n_conv_per_stage_encoder=kwargs["n_conv_per_stage"],
        n_conv_per_stage_decoder=kwargs["n_conv_per_stage_decoder"],
        num_pool_per_axis=[len(kwargs["strides"]) - 1] * len(cfg["patch_size"]),
        pool_op_kernel_sizes=kwargs["strides"],
        conv_kernel_sizes=kwargs["kernel_sizes"],
    )
    return raw


def test_old_format_is_converted(raw: dict[str, Any]) -> None:
    expected = Plans.from_json(raw)
    old = _legacy(_legacy(json.loads(FIXTURE.read_text()), "3d_fullres"), "2d")
    with pytest.warns(
        UserWarning, match=r"of 'Dataset003_Liver': configuration\(s\) \['2d', '3d_fullres'\] use the old nnU-Net plans"
    ):
        plans = Plans.from_json(old)
    for name in ("2d", "3d_fullres", "3d_cascade_fullres"):
        assert plans[name] == expected[name]
    assert _without_version(plans.to_json()) == old  # stored as read


def _without_version(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "nnseg_format_version"}


def test_old_format_that_cannot_be_converted(raw: dict[str, Any]) -> None:
    old = _legacy(raw, "3d_fullres", class_name="MyUNet")
    with pytest.raises(PlansError, match=r"configuration '3d_fullres' \(old nnU-Net plans format\): cannot convert "
                                         r"UNet_class_name 'MyUNet'; only 'PlainConvUNet' and 'ResidualEncoderUNet'"):  # fmt: skip
        Plans.from_json(old)
    old["configurations"]["3d_fullres"]["UNet_class_name"] = "PlainConvUNet"
    del old["configurations"]["3d_fullres"]["unet_max_num_features"]
    with pytest.raises(
        PlansError, match=r"lacks key\(s\) \['unet_max_num_features'\] needed to rebuild its 'architecture'"
    ):
        Plans.from_json(old)
