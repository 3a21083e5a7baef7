"""Normalisation formulas, checked by hand, and the scheme registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nnseg.errors import ConfigError, DatasetError, PlansError
from nnseg.preprocessing import _normalization as norm
from nnseg.preprocessing._normalization import (
    EPS,
    CTNormalizer,
    NoNormalizer,
    Normalizer,
    RescaleTo01Normalizer,
    RGBTo01Normalizer,
    ZScoreNormalizer,
    available_schemes,
    build_normalizer,
    channel_name_for_scheme,
    register_normalizer,
    scheme_for_channel_name,
)

CT_PROPS = {"mean": 10.0, "std": 4.0, "percentile_00_5": 0.0, "percentile_99_5": 30.0, "median": 9.0}


def test_zscore_without_mask_matches_hand_formula() -> None:
    image = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out = ZScoreNormalizer()(image.copy())
    expected = (image - 2.5) / np.sqrt(1.25)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_zscore_with_mask_uses_only_voxels_inside_and_leaves_the_rest() -> None:
    image = np.array([[[0.0, 2.0, 4.0, 0.0]]], dtype=np.float32)
    seg = np.array([[[-1, 0, 1, -1]]], dtype=np.int8)
    out = ZScoreNormalizer(use_mask=True)(image.copy(), seg)
    # inside values 2 and 4: mean 3, std 1
    np.testing.assert_allclose(out, [[[0.0, -1.0, 1.0, 0.0]]])


def test_zscore_with_mask_and_empty_mask_changes_nothing() -> None:
    image = np.ones((1, 2, 2), dtype=np.float32)
    out = ZScoreNormalizer(use_mask=True)(image.copy(), np.full((1, 2, 2), -1, dtype=np.int8))
    np.testing.assert_array_equal(out, image)


def test_zscore_of_constant_image_divides_by_eps_and_gives_zeros() -> None:
    out = ZScoreNormalizer()(np.full((2, 3, 4), 7.0, dtype=np.float32))
    np.testing.assert_array_equal(out, 0.0)


def test_zscore_with_mask_needs_seg() -> None:
    with pytest.raises(ConfigError, match=r"use_mask=True\) needs seg"):
        ZScoreNormalizer(use_mask=True)(np.ones((1, 2, 2)))


def test_ct_clips_to_percentiles_then_standardises() -> None:
    image = np.array([[[-50.0, 10.0, 14.0, 100.0]]])
    out = CTNormalizer.from_intensity_properties(CT_PROPS)(image)
    np.testing.assert_allclose(out, [[[(0 - 10) / 4, 0.0, 1.0, (30 - 10) / 4]]])
    assert out.dtype == np.float32


def test_ct_std_below_eps_uses_eps() -> None:
    out = CTNormalizer(mean=0.0, std=0.0, lower=-1.0, upper=1.0)(np.array([[[1e-9]]]))
    np.testing.assert_allclose(out, [[[np.float32(1e-9) / EPS]]], rtol=1e-5)


def test_ct_without_statistics_is_a_plans_error() -> None:
    with pytest.raises(PlansError, match=r"missing \['std', 'percentile_00_5'\]"):
        CTNormalizer.from_intensity_properties({"mean": 1.0, "percentile_99_5": 2.0})


def test_no_normalization_only_casts() -> None:
    image = np.array([[[1, 200, -3]]], dtype=np.int16)
    out = NoNormalizer()(image)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image)


def test_rescale_to_0_1() -> None:
    np.testing.assert_allclose(RescaleTo01Normalizer()(np.array([[[2.0, 4.0, 6.0]]])), [[[0.0, 0.5, 1.0]]])
    np.testing.assert_array_equal(RescaleTo01Normalizer()(np.full((1, 1, 3), 5.0)), 0.0)


def test_rgb_to_0_1_divides_by_255_and_rejects_other_ranges() -> None:
    np.testing.assert_allclose(RGBTo01Normalizer()(np.array([[[0, 51, 255]]], dtype=np.uint8)), [[[0.0, 0.2, 1.0]]])
    with pytest.raises(DatasetError, match=r"expects values in \[0, 255\]; got values in \[0.0, 300.0\]"):
        RGBTo01Normalizer()(np.array([[[0.0, 300.0]]]))


@pytest.mark.parametrize(
    ("channel_name", "scheme"),
    [
        ("CT", "CTNormalization"),
        ("ct", "CTNormalization"),
        ("noNorm", "NoNormalization"),
        ("ZScore", "ZScoreNormalization"),
        ("rescale_to_0_1", "RescaleTo01Normalization"),
        ("RGB_to_0_1", "RGBTo01Normalization"),
        ("T2", "ZScoreNormalization"),
        ("FLAIR", "ZScoreNormalization"),
    ],
)
def test_channel_names_select_schemes_case_insensitively(channel_name: str, scheme: str) -> None:
    assert scheme_for_channel_name(channel_name) == scheme


@pytest.mark.parametrize("scheme", ["CTNormalization", "NoNormalization", "ZScoreNormalization",
                                    "RescaleTo01Normalization", "RGBTo01Normalization"])  # fmt: skip
def test_scheme_and_channel_name_round_trip(scheme: str) -> None:
    assert scheme_for_channel_name(channel_name_for_scheme(scheme)) == scheme
    assert isinstance(build_normalizer(scheme, intensity_properties=CT_PROPS), Normalizer)


def test_build_normalizer_accepts_class_names_in_any_case_and_channel_keys() -> None:
    assert isinstance(build_normalizer("ctnormalization", intensity_properties=CT_PROPS), CTNormalizer)
    assert isinstance(build_normalizer("ct", intensity_properties=CT_PROPS), CTNormalizer)
    zscore = build_normalizer("ZScoreNormalization", use_mask_for_norm=True)
    assert isinstance(zscore, ZScoreNormalizer)
    assert zscore.use_mask
    assert zscore.leaves_outside_mask_at_zero
    assert not build_normalizer("CTNormalization", intensity_properties=CT_PROPS).leaves_outside_mask_at_zero


def test_unknown_scheme_suggests_the_closest_name() -> None:
    with pytest.raises(
        PlansError, match=r"unknown normalisation scheme 'CTNormalisation'.*Did you mean 'CTNormalization'"
    ):
        build_normalizer("CTNormalisation")


def test_register_normalizer_adds_a_scheme_and_a_channel_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(norm, "_FACTORIES", dict(norm._FACTORIES))
    monkeypatch.setattr(norm, "_CHANNEL_NAMES", dict(norm._CHANNEL_NAMES))
    register_normalizer("TimesTwo", lambda use_mask, props: _TimesTwo(), channel_name="Double")
    assert "TimesTwo" in available_schemes()
    assert scheme_for_channel_name("DOUBLE") == "TimesTwo"
    np.testing.assert_array_equal(build_normalizer("TimesTwo")(np.ones((1, 1, 2))), 2.0)


class _TimesTwo:
    leaves_outside_mask_at_zero = False

    def __call__(self, image: np.ndarray, seg: np.ndarray | None = None) -> np.ndarray:
        return (image * 2).astype(np.float32)


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(2, 6), st.integers(2, 6)),
              elements=st.floats(-1000, 1000, width=32)))  # fmt: skip
def test_zscore_output_has_zero_mean_and_unit_std(image: np.ndarray) -> None:
    assume(float(image.astype(np.float64).std()) > 1e-2)  # near-constant images blow float32 noise up by 1/EPS
    out = ZScoreNormalizer()(image.copy())
    assert abs(float(out.astype(np.float64).mean())) < 1e-3
    assert abs(float(out.astype(np.float64).std()) - 1.0) < 1e-3
