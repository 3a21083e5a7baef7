"""The pooled statistics equal NumPy's (what nnU-Net computes) bit for bit, without changing the samples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import nnseg.fingerprint._stats as stats_module
from nnseg.fingerprint import IntensityStats
from nnseg.fingerprint._stats import PERCENTILES, pooled_statistics


def numpy_statistics(samples: np.ndarray) -> tuple[float, ...]:
    """nnU-Net's formulas: np.mean, one np.percentile call, np.std, np.min, np.max."""
    p00_5, median, p99_5 = np.percentile(samples.copy(), PERCENTILES)
    return (float(np.mean(samples)), float(median), float(np.std(samples)), float(np.min(samples)),
            float(np.max(samples)), float(p99_5), float(p00_5))  # fmt: skip


def _same(got: tuple[float, ...], want: tuple[float, ...]) -> bool:
    """Equal bits (NaN equals NaN, -0.0 differs from 0.0)."""
    return np.array(got).tobytes() == np.array(want).tobytes()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 128 values (NumPy's smallest pairwise block): many chunks and leaves on small arrays."""
    monkeypatch.setattr(stats_module, "CHUNK", 128)


VALUES = st.one_of(
    st.floats(-3, 3, width=32),
    st.sampled_from([0.0, 1.5, -2.25, 7.0, 1e30, -1e-30, 1e-45, -1e-45]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow of huge values: NumPy warns alike
@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 1500), elements=VALUES))
def test_equal_to_numpy_and_samples_unchanged(samples: np.ndarray) -> None:
    before = samples.copy()
    assert _same(pooled_statistics(samples), numpy_statistics(samples))
    assert samples.tobytes() == before.tobytes()


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow of huge values: NumPy warns alike
@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 600), elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, np.inf, np.nan])))
def test_negative_zero_infinity_and_nan_give_numpys_result(samples: np.ndarray) -> None:
    assert _same(pooled_statistics(samples), numpy_statistics(samples))


def test_many_leaves_of_the_pairwise_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "CHUNK", 1000)
    rng = np.random.default_rng(5)
    # wide dynamic range: any other summation order changes the float32 std
    samples = (rng.standard_normal(400_003) * np.exp(rng.uniform(-8, 8, 400_003))).astype(np.float32)
    assert _same(pooled_statistics(samples), numpy_statistics(samples))
    integral = rng.normal(130, 35, 300_001).round().astype(np.float32)  # CT-like ties
    assert _same(pooled_statistics(integral), numpy_statistics(integral))


@pytest.mark.parametrize("value", [5.0, -3.25, 0.0, -0.0])
def test_one_value_everywhere(value: float) -> None:
    samples = np.full(1001, value, dtype=np.float32)
    assert _same(pooled_statistics(samples), numpy_statistics(samples))


def test_other_dtypes_use_numpy() -> None:
    samples = np.arange(-50, 1000, dtype=np.int16)
    assert _same(pooled_statistics(samples), numpy_statistics(samples))
    doubles = np.linspace(-1, 1, 777)
    assert _same(pooled_statistics(doubles[::2]), numpy_statistics(doubles[::2]))


def test_intensity_stats_from_samples_uses_them() -> None:
    samples = np.random.default_rng(2).gamma(2.0, 50.0, 5000).astype(np.float32)
    stats = IntensityStats.from_samples(samples)
    mean, median, std, low, high, p99_5, p00_5 = numpy_statistics(samples)
    assert (stats.mean, stats.median, stats.std, stats.min, stats.max) == (mean, median, std, low, high)
    assert (stats.percentile_99_5, stats.percentile_00_5) == (p99_5, p00_5)
