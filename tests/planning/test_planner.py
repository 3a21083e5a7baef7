"""``Planner`` and the ResEnc presets: configurations, batch size, normalisation, constants, budgets, bad input."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError, PlanningError
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import Planner, ResEncLPlanner, ResEncMPlanner, ResEncXLPlanner

STATS = IntensityStats(mean=50.0, median=50.0, std=10.0, min=0.0, max=100.0, percentile_99_5=95.0, percentile_00_5=5.0)


def _fingerprint(
    spacing: tuple[float, float, float], shape: tuple[int, int, int], num_cases: int = 4, *,
    channels: int = 1, relative_size: float = 1.0,
) -> Fingerprint:  # fmt: skip
    return Fingerprint(
        spacings=(spacing,) * num_cases,
        shapes_after_crop=(shape,) * num_cases,
        intensity_stats=(STATS,) * channels,
        median_relative_size_after_cropping=relative_size,
    )


def _spec(channels: tuple[str, ...] = ("CT",), num_training: int = 4, num_labels: int = 3) -> DatasetSpec:
    labels = {"background": 0, **{f"l{i}": i for i in range(1, num_labels)}}
    return DatasetSpec(channel_names=channels, labels=labels, num_training=num_training, file_ending=".nii.gz")


ISO = _fingerprint((1.0, 1.0, 1.0), (64, 64, 64))
LARGE_CT = _fingerprint((2.5, 0.8, 0.8), (120, 420, 420), 50)


# ------------------------------------------------------------------------------------------ configurations
def test_a_3d_dataset_gets_2d_and_3d_fullres() -> None:
    plans = Planner().plan(ISO, _spec(), dataset_name="Dataset001_Iso")
    assert plans.configuration_names == ("2d", "3d_fullres")
    assert plans.dataset_name == "Dataset001_Iso"
    assert plans["3d_fullres"].patch_size == (64, 64, 64)
    assert plans["3d_fullres"].batch_dice is False
    assert plans["2d"].batch_dice is True
    assert plans["2d"].spacing == (1.0, 1.0)
    assert plans["3d_fullres"].data_identifier == "nnUNetPlans_3d_fullres"


def test_a_2d_dataset_gets_only_2d() -> None:
    plans = Planner().plan(_fingerprint((999.0, 1.0, 1.0), (1, 300, 200)), _spec())
    assert plans.configuration_names == ("2d",)
    assert plans["2d"].patch_size == (320, 224)  # padded up to the divisor


def test_large_images_get_3d_lowres_and_the_cascade() -> None:
    plans = Planner().plan(LARGE_CT, _spec(num_training=50))
    assert plans.configuration_names == ("2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres")
    low, full = plans["3d_lowres"], plans["3d_fullres"]
    assert low.next_stages == ("3d_cascade_fullres",)
    assert plans["3d_cascade_fullres"].previous_stage == "3d_lowres"
    assert low.batch_dice is False
    assert full.batch_dice is True
    assert low.spacing[0] == 2.5
    assert low.spacing[1] > 0.8
    assert math.prod(low.median_image_size_in_voxels) * 2 <= math.prod(full.median_image_size_in_voxels)
    assert full.patch_size == (56, 192, 192)  # the worked example of facts §4.5
    assert plans["2d"].patch_size == (448, 448)
    assert plans["2d"].batch_size == 16


def test_no_lowres_when_the_threshold_is_lowered() -> None:
    plans = Planner(lowres_creation_threshold=0.01).plan(LARGE_CT, _spec(num_training=50))
    assert "3d_lowres" not in plans.configuration_names
    assert plans["3d_fullres"].batch_dice is False


def test_overwrite_target_spacing_and_suppress_transpose() -> None:
    plans = Planner(overwrite_target_spacing=(1.0, 1.0, 2.0)).plan(ISO, _spec())
    assert plans.transpose_forward == (2, 0, 1)
    assert plans["3d_fullres"].spacing == (2.0, 1.0, 1.0)
    plans = Planner(overwrite_target_spacing=(1.0, 1.0, 2.0), suppress_transpose=True).plan(ISO, _spec())
    assert plans.transpose_forward == (0, 1, 2)
    assert plans["3d_fullres"].spacing == (1.0, 1.0, 2.0)


# ------------------------------------------------------------------------------------------ batch size
def test_five_percent_cap_and_minimum_batch_size() -> None:
    small = _fingerprint((1.0, 1.0, 1.0), (32, 32, 32), 10)
    # 10 cases of 32**3 voxels: 5 % of that is half a patch -> the cap gives 0, the minimum gives 2
    assert Planner().plan(small, _spec(num_training=10))["3d_fullres"].batch_size == 2
    assert Planner(min_batch_size=3).plan(small, _spec(num_training=10))["3d_fullres"].batch_size == 3
    # the cap is round(voxels * covered / patch): 10 * 32**3 * 0.4 / 32**3 = 4
    assert Planner(max_dataset_covered=0.4).plan(small, _spec(num_training=10))["3d_fullres"].batch_size == 4


def test_presets_cap_at_the_whole_dataset() -> None:
    small = _fingerprint((1.0, 1.0, 1.0), (32, 32, 32), 10)
    plan = ResEncMPlanner().plan(small, _spec(num_training=10))["3d_fullres"]
    report = plan.memory_report
    assert report is not None
    assert round(report.budget / report.estimate * 2) > 10
    assert plan.batch_size == 10  # max_dataset_covered=1: one batch may cover the 10 cases, not more


def test_batch_size_fills_the_budget() -> None:
    many = _fingerprint((1.0, 1.0, 1.0), (48, 48, 48), 2000)  # 5 % of 2000 cases: a cap of 100, not reached
    plan = Planner().plan(many, _spec(num_training=2000))["3d_fullres"]
    report = plan.memory_report
    assert report is not None
    assert plan.batch_size == round(report.budget / report.estimate * 2)
    assert plan.batch_size > 2


# ------------------------------------------------------------------------------------------ normalisation
def test_normalisation_per_channel_and_use_mask_for_norm() -> None:
    channels = ("CT", "T2", "noNorm", "zscore", "rescale_to_0_1", "rgb_to_0_1")
    cropped = _fingerprint((1.0, 1.0, 1.0), (64, 64, 64), channels=len(channels), relative_size=0.5)
    plan = Planner().plan(cropped, _spec(channels))["3d_fullres"]
    assert plan.normalization_schemes == ("CTNormalization", "ZScoreNormalization", "NoNormalization",
                                          "ZScoreNormalization", "RescaleTo01Normalization", "RGBTo01Normalization")  # fmt: skip
    assert plan.use_mask_for_norm == (False, True, False, True, False, False)
    uncropped = dataclasses.replace(cropped, median_relative_size_after_cropping=0.75)
    assert Planner().plan(uncropped, _spec(channels))["3d_fullres"].use_mask_for_norm == (False,) * 6


# ------------------------------------------------------------------------------------------ constants
def test_constants_are_overridable_fields() -> None:
    planner = dataclasses.replace(Planner(), base_num_features=16, max_features_3d=128)
    architecture = planner.plan(ISO, _spec())["3d_fullres"].architecture.plain_arch_kwargs()
    assert architecture["features_per_stage"] == [16, 32, 64, 128, 128]
    deeper = Planner(featuremap_min_edge_length=2).plan(ISO, _spec())["3d_fullres"]
    assert deeper.num_stages == Planner().plan(ISO, _spec())["3d_fullres"].num_stages + 1
    lists = Planner(encoder_per_stage=[3], decoder_convs_per_stage=(1,))  # type: ignore[arg-type]
    assert lists.encoder_per_stage == (3,)  # stored as a tuple
    convs = lists.plan(ISO, _spec())["3d_fullres"]
    kwargs = convs.architecture.plain_arch_kwargs()
    assert set(kwargs["n_conv_per_stage"]) == {3}
    assert set(kwargs["n_conv_per_stage_decoder"]) == {1}
    assert Planner(plans_name="Mine").plan(ISO, _spec())["2d"].data_identifier == "Mine_2d"


def test_presets_are_planners_with_other_values() -> None:
    large = ResEncLPlanner()
    assert isinstance(large, Planner)
    assert (large.gpu_memory_gb, large.reference_value_3d, large.plans_name) == (24, 2.1e9, "nnUNetResEncUNetLPlans")
    assert ResEncXLPlanner(base_num_features=16).base_num_features == 16
    plans = large.plan(ISO, _spec())
    assert plans["3d_fullres"].data_identifier == "nnUNetPlans_3d_fullres"  # shares the default plans' data
    assert plans["3d_fullres"].architecture.network_class_name.endswith("ResidualEncoderUNet")
    assert plans.experiment_planner_used == "nnUNetPlannerResEncL"


# ------------------------------------------------------------------------------------------ gpu memory
@pytest.mark.parametrize("gpu_gb", [4, 8, 24])
def test_budget_scales_with_gpu_memory(gpu_gb: float) -> None:
    plans = Planner(gpu_memory_gb=gpu_gb).plan(LARGE_CT, _spec(num_training=50))
    report = plans["3d_fullres"].memory_report
    assert report is not None
    assert report.budget == pytest.approx(560e6 * gpu_gb / 8)
    assert report.gpu_memory_gb == gpu_gb
    assert report.estimate / 2 * 2 <= report.budget  # the default planner's "two samples fit" rule
    two_d = plans["2d"].memory_report
    assert two_d is not None
    assert two_d.budget == pytest.approx(85e6 * gpu_gb / 8)


def test_more_memory_gives_larger_patches() -> None:
    small, large = (Planner(gpu_memory_gb=gb).plan(LARGE_CT, _spec(num_training=50))["3d_fullres"] for gb in (4, 40))
    assert math.prod(large.patch_size) > math.prod(small.patch_size)


def test_resenc_l_scales_its_own_reference_and_warns() -> None:
    with pytest.warns(UserWarning, match=r"nnUNetPlannerResEncL is tuned for gpu_memory_gb=24; planning for 48 GB"):
        report = ResEncLPlanner(gpu_memory_gb=48).plan(ISO, _spec())["3d_fullres"].memory_report
    assert report is not None
    assert report.budget == pytest.approx(2.1e9 * 2)
    assert report.estimate <= report.budget  # the presets' "reference batch fits" rule


def test_resenc_l_at_its_own_target_does_not_warn() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ResEncLPlanner().plan(ISO, _spec())
        Planner(gpu_memory_gb=3).plan(ISO, _spec())  # the default planner never warns about its target
    assert [str(w.message) for w in caught] == []


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("value", [0, -8, float("nan"), float("inf"), "8"])
def test_gpu_memory_must_be_positive_and_finite(value: object) -> None:
    with pytest.raises(
        ConfigError, match=r"Planner: gpu_memory_gb must be a number in \(0, inf\); got .*Leave it at its default \(8\)"
    ):
        Planner(gpu_memory_gb=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"gpu_memory_gb must be a number in \(0, inf\)"):
        ResEncLPlanner(gpu_memory_gb=value)


def test_a_target_so_small_that_no_patch_fits() -> None:
    with pytest.raises(PlanningError, match=r"no 3-D patch fits gpu_memory_gb=3e-05: .* Use gpu_memory_gb >= 0\.01\."):
        Planner(gpu_memory_gb=3e-5).plan(ISO, _spec())


def test_a_tiny_target_that_still_fits_gives_tiny_patches() -> None:
    plan = Planner(gpu_memory_gb=1e-4).plan(ISO, _spec())["3d_fullres"]
    assert plan.patch_size == (5, 5, 4)
    assert plan.num_stages == 1


@pytest.mark.filterwarnings("ignore:nnUNetPlannerResEncM is tuned for")
def test_a_tiny_target_is_an_error_in_2d_too() -> None:
    with pytest.raises(PlanningError, match=r"no 2-D patch fits gpu_memory_gb=1e-05"):
        ResEncMPlanner(gpu_memory_gb=1e-5).plan(_fingerprint((999.0, 1.0, 1.0), (1, 300, 200)), _spec())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "reference_value_3d",
            0,
            r"Planner: reference_value_3d must be a number in \(0, inf\); got 0\. Leave it at its default",
        ),
        ("reference_gb", float("inf"), r"Planner: reference_gb must be a number in \(0, inf\); got inf"),
        ("max_dataset_covered", "1", r"Planner: max_dataset_covered must be a number in \(0, inf\); got '1'"),
        ("min_batch_size", 0, r"Planner: min_batch_size must be an integer >= 1; got 0\. Set min_batch_size=1 or more"),
        ("base_num_features", 2.5, r"Planner: base_num_features must be an integer >= 1; got 2.5"),
        ("network_class", "UNet", r"Planner: network_class must be one of .*; got 'UNet'"),
        (
            "shrink_condition",
            "always",
            r"shrink_condition must be one of 'two_samples', 'reference_batch'; got 'always'",
        ),
        ("encoder_per_stage", (), r"encoder_per_stage must be a non-empty sequence of integers >= 1; got \(\)"),
        ("encoder_per_stage", "22", r"encoder_per_stage must be a non-empty sequence of integers >= 1; got '22'"),
        ("decoder_convs_per_stage", (1, 0.5), r"decoder_convs_per_stage must be a non-empty sequence of integers"),
        ("overwrite_target_spacing", (1.0, 1.0), r"overwrite_target_spacing must be three positive, finite numbers"),
        ("overwrite_target_spacing", (1.0, 1.0, float("inf")), r"overwrite_target_spacing must be three positive"),
        ("overwrite_target_spacing", ("a", 1, 1), r"overwrite_target_spacing must be three positive"),
        ("plans_name", "../evil", r"Planner: plans_name must be a file-name-safe name .*; got '\.\./evil'"),
        ("plans_name", "", r"Planner: plans_name must be a file-name-safe name"),
        ("data_identifier_base", "a/b", r"Planner: data_identifier_base must be a file-name-safe name .*got 'a/b'"),
    ],
)
def test_out_of_range_fields_are_rejected(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Planner(**{field: value})  # type: ignore[arg-type]


def test_numpy_numbers_are_accepted() -> None:
    planner = Planner(gpu_memory_gb=np.float32(12), base_num_features=np.int64(16), encoder_per_stage=np.array([2]))
    assert planner.encoder_per_stage == (2,)
    assert planner.plan(ISO, _spec())["3d_fullres"].memory_report.budget == pytest.approx(560e6 * 12 / 8)  # type: ignore[union-attr]


def test_a_plan_that_was_not_measured_says_how_to_measure_it() -> None:
    report = Planner().plan(ISO, _spec())["3d_fullres"].memory_report
    assert report is not None
    assert report.measured_bytes is None
    assert "not measured yet: nnseg.planning.attach_memory_reports(plans, spec)" in report.note


def test_empty_fingerprint_is_rejected() -> None:
    empty = Fingerprint(
        spacings=(), shapes_after_crop=(), intensity_stats=(STATS,), median_relative_size_after_cropping=1.0
    )
    with pytest.raises(PlanningError, match=r"cannot plan from a fingerprint with zero cases"):
        Planner().plan(empty, _spec())


def test_channel_count_must_match_the_spec() -> None:
    with pytest.raises(PlanningError, match=r"intensity statistics for 1 channel\(s\) but the dataset.json declares 2"):
        Planner().plan(ISO, _spec(("T1", "T2")))


def test_a_zero_size_case_is_rejected() -> None:
    broken = Fingerprint(spacings=((1.0, 1.0, 1.0),) * 2, shapes_after_crop=((64, 64, 64), (0, 64, 64)),
                         intensity_stats=(STATS,), median_relative_size_after_cropping=1.0)  # fmt: skip
    with pytest.raises(
        PlanningError, match=r"fingerprint case 1 has spacing \[1.0, 1.0, 1.0\] and shape \[0, 64, 64\]"
    ):
        Planner().plan(broken, _spec())
