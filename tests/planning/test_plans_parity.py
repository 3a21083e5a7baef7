"""Parity with nnunetv2 2.8.1: its PlansManager reads nnseg plans (and builds their networks), and nnseg reads its
planners' plans."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnseg.planning import MemoryReport, Plans

pytestmark = pytest.mark.parity
FIXTURE = Path(__file__).parent / "data" / "nnUNetPlans.json"
DATASET = "Dataset042_Tiny"


def _plans_manager(source: str | dict[str, Any]) -> Any:
    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    return PlansManager(source)


def _assert_same_as_nnunet(plans: Plans, manager: Any) -> None:
    """Compare every attribute nnU-Net's managers expose with nnseg's values."""
    assert manager.available_configurations == list(plans.configuration_names)
    assert manager.dataset_name == plans.dataset_name
    assert manager.plans_name == plans.plans_name
    assert manager.original_median_spacing_after_transp == list(plans.original_median_spacing_after_transp)
    assert manager.original_median_shape_after_transp == list(plans.original_median_shape_after_transp)
    assert manager.transpose_forward == list(plans.transpose_forward)
    assert manager.transpose_backward == list(plans.transpose_backward)
    assert manager.image_reader_writer_class.__name__ == plans.image_reader_writer
    assert manager.experiment_planner_name == plans.experiment_planner_used
    assert manager.label_manager_class.__name__ == plans.label_manager
    assert manager.foreground_intensity_properties_per_channel == plans.foreground_intensity_properties_per_channel
    for name in plans.configuration_names:
        ours, theirs = plans[name], manager.get_configuration(name)
        resolved = {k: v for k, v in theirs.configuration.items() if k != "inherits_from"}
        assert resolved == ours.to_json(), name
        assert theirs.data_identifier == ours.data_identifier
        assert theirs.preprocessor_name == ours.preprocessor_name
        assert theirs.batch_size == ours.batch_size
        assert theirs.patch_size == list(ours.patch_size)
        assert theirs.median_image_size_in_voxels == list(ours.median_image_size_in_voxels)
        assert theirs.spacing == list(ours.spacing)
        assert theirs.normalization_schemes == list(ours.normalization_schemes)
        assert theirs.use_mask_for_norm == list(ours.use_mask_for_norm)
        assert theirs.network_arch_class_name == ours.architecture.network_class_name
        assert theirs.network_arch_init_kwargs == ours.architecture.plain_arch_kwargs()
        assert list(theirs.network_arch_init_kwargs_req_import) == list(ours.architecture.kw_requires_import)
        assert theirs.pool_op_kernel_sizes == ours.architecture.plain_arch_kwargs()["strides"]
        assert theirs.batch_dice == ours.batch_dice
        assert (theirs.next_stage_names or []) == list(ours.next_stages)
        assert theirs.previous_stage_name == ours.previous_stage
        for kind in ("data", "seg", "probabilities"):
            fn = getattr(theirs, f"resampling_fn_{kind}")
            assert fn.func.__name__ == getattr(ours, f"resampling_fn_{kind}")
            assert fn.keywords == getattr(ours, f"resampling_fn_{kind}_kwargs")


def test_nnunet_reads_plans_saved_by_nnseg(tmp_path: Path) -> None:
    plans = Plans.load(FIXTURE).with_configurations(
        {"3d_cascade_bs4": {"inherits_from": "3d_cascade_fullres", "batch_size": 4}}
    )
    report = MemoryReport(estimate=4.5e8, budget=5.6e8, gpu_memory_gb=8.0)
    full = plans["3d_fullres"]
    plans = plans.replace_configuration("3d_fullres", type(full)(**{**_fields(full), "memory_report": report}))
    plans.save(tmp_path / "nnUNetPlans.json")
    manager = _plans_manager(str(tmp_path / "nnUNetPlans.json"))
    _assert_same_as_nnunet(plans, manager)
    assert manager.get_configuration("3d_cascade_bs4").batch_size == 4
    assert manager.get_configuration("3d_cascade_bs4").previous_stage_name == "3d_lowres"


def _fields(plan: Any) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in plan.__dataclass_fields__}


def test_old_format_converted_like_nnunet() -> None:
    raw = json.loads(FIXTURE.read_text())
    for name in ("2d", "3d_fullres"):
        cfg = raw["configurations"][name]
        kwargs = cfg.pop("architecture")["arch_kwargs"]
        cfg.update(UNet_class_name="PlainConvUNet", UNet_base_num_features=32,
                   unet_max_num_features=kwargs["features_per_stage"][-1],
                   n_conv_per_stage_encoder=kwargs["n_conv_per_stage"],
                   n_conv_per_stage_decoder=kwargs["n_conv_per_stage_decoder"],
                   num_pool_per_axis=[len(kwargs["strides"]) - 1] * len(cfg["patch_size"]),
                   pool_op_kernel_sizes=kwargs["strides"], conv_kernel_sizes=kwargs["kernel_sizes"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plans = Plans.from_json(copy.deepcopy(raw))
        manager = _plans_manager(copy.deepcopy(raw))
        for name in plans.configuration_names:
            assert manager.get_configuration(name).configuration == {
                **plans[name].to_json(),
                **({"inherits_from": "3d_fullres"} if name == "3d_cascade_fullres" else {}),
            }


def _write_tiny_raw_dataset(root: Path) -> None:
    """A raw dataset with two tiny images and a hand-written fingerprint that describes 50 CT cases."""
    import SimpleITK as sitk

    raw, pre = root / "raw" / DATASET, root / "pre" / DATASET
    for folder in (raw / "imagesTr", raw / "labelsTr", pre):
        folder.mkdir(parents=True)
    for i in range(2):
        image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32))
        image.SetSpacing((0.8, 0.8, 2.5))
        sitk.WriteImage(image, str(raw / "imagesTr" / f"case_{i:03d}_0000.nii.gz"))
        sitk.WriteImage(sitk.Cast(image, sitk.sitkUInt8), str(raw / "labelsTr" / f"case_{i:03d}.nii.gz"))
    labels = {"background": 0, "liver": 1, "tumor": 2}
    dataset = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 50, "file_ending": ".nii.gz"}
    (raw / "dataset.json").write_text(json.dumps(dataset))
    depths = np.random.default_rng(0).integers(100, 140, 50)
    stats = {"mean": 100.5, "median": 98.0, "std": 40.25, "min": -200.0, "max": 400.0, "percentile_99_5": 300.0,
             "percentile_00_5": -50.0}  # fmt: skip
    fingerprint = {
        "spacings": [[2.5, 0.8, 0.8]] * 50,
        "shapes_after_crop": [[int(d), 420, 420] for d in depths],
        "foreground_intensity_properties_per_channel": {"0": stats},
        "median_relative_size_after_cropping": 1.0,
    }
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))


@pytest.fixture(scope="module")
def nnunet_plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plan the tiny dataset with nnunetv2's default and ResEnc-L planners (as a black box)."""
    pytest.importorskip("nnunetv2")
    root = tmp_path_factory.mktemp("nnunet")
    _write_tiny_raw_dataset(root)
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "pre"), ("nnUNet_results", "results")):
            mp.setenv(name, str(root / folder))
        mp.setenv("nnUNet_n_proc_DA", "1")  # otherwise every memory estimate spawns `hostname`
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
        from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
            nnUNetPlannerResEncL,
        )
        from test_planner_parity import _memoised_meta_estimate  # meta-device estimate: same numbers, ~10x faster

        original = ExperimentPlanner.static_estimate_VRAM_usage
        mp.setattr(ExperimentPlanner, "static_estimate_VRAM_usage", staticmethod(_memoised_meta_estimate(original)))

        ExperimentPlanner(DATASET).plan_experiment()
        nnUNetPlannerResEncL(DATASET).plan_experiment()
    pre = root / "pre" / DATASET
    return {"default": pre / "nnUNetPlans.json", "resenc_l": pre / "nnUNetResEncUNetLPlans.json"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["default", "resenc_l"])
def test_nnseg_round_trips_nnunet_planner_output(nnunet_plans: dict[str, Path], kind: str, tmp_path: Path) -> None:
    original = json.loads(nnunet_plans[kind].read_text())
    plans = Plans.load(nnunet_plans[kind])
    written = plans.to_json()
    assert written.pop("nnseg_format_version") == 1
    assert written == original
    assert json.dumps(written, indent=4) == nnunet_plans[kind].read_text().rstrip("\n")  # same text, too
    plans.save(tmp_path / "plans.json")
    _assert_same_as_nnunet(plans, _plans_manager(str(tmp_path / "plans.json")))
    if kind == "default":
        assert plans["3d_cascade_fullres"].previous_stage == "3d_lowres"


@pytest.mark.slow
def test_default_and_resenc_l_share_preprocessing(nnunet_plans: dict[str, Path]) -> None:
    default, resenc_l = Plans.load(nnunet_plans["default"]), Plans.load(nnunet_plans["resenc_l"])
    for name in ("2d", "3d_fullres"):
        assert default[name].architecture != resenc_l[name].architecture
        assert (
            default[name].batch_size != resenc_l[name].batch_size
            or default[name].patch_size != resenc_l[name].patch_size
        )
        assert default[name].data_identifier == resenc_l[name].data_identifier
        assert default[name].preprocessing_hash() == resenc_l[name].preprocessing_hash()
    assert default.content_hash() != resenc_l.content_hash()


@pytest.mark.slow
@pytest.mark.parametrize("planner", ["default", "resenc_m", "resenc_l", "resenc_xl"])
@pytest.mark.parametrize("case", ["large_lowres", "2d_rgb"])
def test_nnunet_loads_nnseg_planner_output_and_builds_its_networks(case: str, planner: str, tmp_path: Path) -> None:
    """What nnseg's planners save, nnunetv2 reads unchanged and builds the planned networks from."""
    import torch

    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from test_planner_parity import CASES, _nnseg_plans

    plans = _nnseg_plans(case, planner, {"resenc_l": 24, "resenc_xl": 40}.get(planner, 8), f"Dataset900_{case}")
    plans.save(tmp_path / f"{plans.plans_name}.json")
    manager = _plans_manager(str(tmp_path / f"{plans.plans_name}.json"))
    _assert_same_as_nnunet(plans, manager)
    num_classes, num_channels = len(CASES[case].labels), len(CASES[case].channels)
    for name in plans.configuration_names:
        theirs, report = manager.get_configuration(name), plans[name].memory_report
        assert report is not None
        # the fitted patch obeys the shrink rule: the default planner fits two samples (2-D: 2 of the reference 12)
        assert report.estimate <= report.budget * (6 if planner == "default" and plans[name].is_2d else 1)
        with torch.device("meta"):
            network = get_network_from_plans(theirs.network_arch_class_name, theirs.network_arch_init_kwargs,
                                             theirs.network_arch_init_kwargs_req_import, num_channels, num_classes,
                                             allow_init=False, deep_supervision=False)  # fmt: skip
        assert type(network).__name__ == plans[name].architecture.network_class_name.rsplit(".", 1)[1]
        assert int(network.compute_conv_feature_map_size(theirs.patch_size)) == report.estimate, name
