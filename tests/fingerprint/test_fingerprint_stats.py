"""Fingerprint statistics: a hand-built dataset computed by hand, nnU-Net's sampling rule, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnseg.fingerprint._extract as extract_module
from nnseg._cropping import crop_to_nonzero
from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint, fingerprint_case
from nnseg.fingerprint._extract import DEFAULT_SEED, default_num_samples
from nnseg.testing import make_synthetic_dataset


def test_hand_built_dataset_statistics(hand_dataset: Path) -> None:
    fp = extract_fingerprint(RawDataset.from_folder(hand_dataset), num_samples=100)
    assert fp.case_ids == ("a", "b", "c")
    expected_spacings = [(3.0, 0.5, 0.75), (2.5, 0.5, 0.75), (4.0, 0.6, 0.6)]
    for got, want in zip(fp.spacings, expected_spacings):
        assert got == pytest.approx(want, rel=1e-6)  # NIfTI stores spacing as float32
    assert fp.shapes_after_crop == ((2, 4, 4), (5, 6, 8), (4, 3, 8))
    # relative sizes 1/6, 1 and 0.5; case c (no foreground) still counts here
    assert fp.median_relative_size_after_cropping == pytest.approx(0.5)
    # channel 0: 100 samples of 10 (case a) and 100 of 20 (case b); case c has no foreground
    t2, adc = fp.intensity_stats
    assert (t2.mean, t2.median, t2.std, t2.min, t2.max) == pytest.approx((15, 15, 5, 10, 20))
    assert (t2.percentile_00_5, t2.percentile_99_5) == pytest.approx((10, 20))
    # channel 1 is 2 * channel 0 + 1 inside the image: 21 and 41
    assert (adc.mean, adc.median, adc.std, adc.min, adc.max) == pytest.approx((31, 31, 10, 21, 41))
    assert (adc.percentile_00_5, adc.percentile_99_5) == pytest.approx((21, 41))


def test_default_num_samples_is_nnunets() -> None:
    assert default_num_samples(3) == 33333333
    assert default_num_samples(1000) == 100000


def test_samples_are_drawn_like_random_state_choice_and_inputs_stay_unchanged() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 6, 7, 8)).astype(np.float32)
    images[:, 0] = 0  # the crop removes the first slice
    seg = (rng.random((1, 6, 7, 8)) > 0.6).astype(np.uint8) * 2
    before = images.copy(), seg.copy()
    result = fingerprint_case(images, seg, (1.0, 2.0, 3.0), num_samples=50)
    cropped, cropped_seg, _ = crop_to_nonzero(images, seg)
    foreground = cropped_seg[0] > 0
    random_state = np.random.RandomState(DEFAULT_SEED)  # one per case; the channels draw in turn
    for channel in range(2):
        expected = random_state.choice(cropped[channel][foreground], 50, replace=True)
        np.testing.assert_array_equal(result.samples[channel], expected)
    assert result.shape_before_crop == (6, 7, 8)
    assert result.shape_after_crop == (5, 7, 8)
    assert result.num_foreground_voxels == int(foreground.sum())
    np.testing.assert_array_equal(images, before[0])
    np.testing.assert_array_equal(seg, before[1])


@settings(max_examples=25, deadline=None)
@given(
    values=hnp.arrays(np.float32, st.integers(1, 40), elements=st.floats(-1e3, 1e3, width=32)),
    num_samples=st.integers(1, 70),
    chunk=st.integers(1, 16),
    seed=st.integers(0, 2**31 - 1),
)
def test_chunked_draw_consumes_the_same_random_stream(
    values: np.ndarray, num_samples: int, chunk: int, seed: int
) -> None:
    images = values.reshape(1, 1, 1, -1)
    seg = np.ones_like(images, dtype=np.uint8)
    expected = np.random.RandomState(seed).choice(images[0].ravel(), num_samples, replace=True)
    original = extract_module._DRAW_CHUNK
    extract_module._DRAW_CHUNK = chunk
    try:
        samples = extract_module._draw_samples(images, seg[0] > 0, num_samples, seed)
    finally:
        extract_module._DRAW_CHUNK = original
    np.testing.assert_array_equal(samples[0], expected)


def test_case_without_foreground_gives_no_samples() -> None:
    images = np.ones((2, 3, 3, 3), np.float32)
    result = fingerprint_case(images, np.zeros((3, 3, 3), np.uint8), (1.0, 1.0, 1.0), num_samples=10)
    assert result.samples.shape == (2, 0)
    assert not result.has_foreground


def test_result_is_deterministic_and_independent_of_num_workers(synthetic_mr: Path) -> None:
    dataset = RawDataset.from_folder(synthetic_mr)
    one = extract_fingerprint(dataset, num_samples=500)
    again = extract_fingerprint(dataset, num_samples=500)
    two = extract_fingerprint(dataset, num_samples=500, num_workers=2)
    assert one.to_json() == again.to_json() == two.to_json()
    assert one.num_cases == 6
    assert one.median_relative_size_after_cropping < 1.0  # the MR cases are cropped


def test_two_d_dataset_gets_the_pseudo_spacing_and_a_singleton_axis(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=2, shape=(24, 20), spacing=(0.5, 0.75), two_d=True,
                                    modality="mr")  # fmt: skip
    fp = extract_fingerprint(RawDataset.from_folder(folder), num_samples=50)
    assert fp.spacings == ((999 * 0.75, 0.5, 0.75),) * 2
    assert all(shape[0] == 1 and len(shape) == 3 for shape in fp.shapes_after_crop)
