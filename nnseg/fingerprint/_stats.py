"""Pooled intensity statistics equal bit for bit to NumPy's, without sorting or copying the pooled samples.

nnU-Net takes ``np.mean``, ``np.std``, ``np.min``, ``np.max`` and ``np.percentile(x, (0.5, 50, 99.5))`` of up
to 1e8 pooled float32 samples. ``np.percentile`` partitions a copy of them (or, in place, destroys their
order) and ``np.std`` allocates a temporary as large as the samples. Here, for float32 samples:

* mean, min and max are NumPy's own one-pass reductions;
* the standard deviation follows NumPy's formula (float32 mean subtracted, squared, summed pairwise in
  float32), evaluated leaf by leaf along NumPy's pairwise-summation tree: the same additions in the same
  order, so the same bits, with a temporary of one leaf instead of one of the whole array;
* the order statistics the percentiles need come from a two-level radix count: the high 16 bits of an
  order-preserving integer key of every float, then the low 16 bits inside the few buckets that hold a
  wanted rank. Two read-only passes, no sort, and counts are exact, so the values are the ones a sort would
  put at those ranks; NumPy's linear interpolation is then applied to them.

Samples holding NaN or infinities, and samples with negative zeros where a wanted order statistic is zero
(a sort's placement of ``-0.0`` against ``0.0`` decides the sign there), use ``np.percentile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PERCENTILES", "pooled_statistics"]

PERCENTILES = (0.5, 50.0, 99.5)
"""The percentiles nnU-Net records, in the order of its ``np.percentile`` call."""
CHUNK = 1 << 18
"""Samples per pass step and per leaf of the pairwise sum (1 MB of float32: stays in cache)."""
_LOW_BITS = 16
_BATCH = 1 << 21
_PAIRWISE_BLOCK = 128
_BUCKETS = 1 << _LOW_BITS
_NEGATIVE_ZERO_BUCKET = _BUCKETS // 2 - 1  # keys -65536..-1: -0.0 and the tiniest negative subnormals


def _keys(chunk: np.ndarray) -> np.ndarray:
    """Order-preserving int32 keys of float32 values (negative floats get their 31 low bits flipped)."""
    bits = chunk.view(np.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _float_of_key(key: int) -> np.float32:
    bits = np.array([key], dtype=np.int32)
    return _keys(bits.view(np.float32)).view(np.float32)[0]  # the key transform is its own inverse


def _high_bucket(keys: np.ndarray) -> np.ndarray:
    return (keys >> _LOW_BITS) + _BUCKETS // 2  # 0 .. 65535, in value order


def _order_statistics(values: np.ndarray, ranks: Sequence[int]) -> np.ndarray | None:
    """The values a sort would put at ``ranks``; None when one is a zero and ``-0.0`` may be among the samples."""
    high = np.zeros(_BUCKETS, dtype=np.int64)
    for start in range(0, values.size, CHUNK):
        high += np.bincount(_high_bucket(_keys(values[start : start + CHUNK])), minlength=_BUCKETS)
    below = np.cumsum(high) - high  # samples in lower buckets
    buckets = np.searchsorted(np.cumsum(high), np.asarray(ranks), side="right")
    wanted = np.unique(buckets)
    slot = np.full(_BUCKETS, -1, dtype=np.int8)  # at most 2 * len(PERCENTILES) wanted buckets
    slot[wanted] = np.arange(wanted.size)
    low = np.zeros(wanted.size * _BUCKETS, dtype=np.int64)
    batch: list[np.ndarray] = []  # counted together: one bincount per chunk would clear and add `low` each time
    for start in range(0, values.size + CHUNK, CHUNK):
        if start >= values.size or sum(part.size for part in batch) >= _BATCH:
            if batch:
                low += np.bincount(np.concatenate(batch), minlength=low.size)
            batch = []
        if start >= values.size:
            break
        keys = _keys(values[start : start + CHUNK])
        where = np.take(slot, _high_bucket(keys))  # take and compress: several times faster than [] indexing
        inside = where >= 0
        if inside.any():
            low_bits = np.compress(inside, keys) & (_BUCKETS - 1)
            batch.append((np.compress(inside, where).astype(np.int64) << _LOW_BITS) | low_bits)
    result = np.empty(len(ranks), dtype=np.float32)
    for i, (rank, bucket) in enumerate(zip(ranks, buckets)):
        position = int(slot[bucket])
        counts = low[position * _BUCKETS : (position + 1) * _BUCKETS]
        in_bucket = int(np.searchsorted(np.cumsum(counts), rank - below[bucket], side="right"))
        result[i] = _float_of_key(((int(bucket) - _BUCKETS // 2) << _LOW_BITS) | in_bucket)
    if high[_NEGATIVE_ZERO_BUCKET] and not result.all():  # a sort may put either zero at that rank
        return None
    return result


def _percentiles(values: np.ndarray) -> np.ndarray:
    """``np.percentile(values, PERCENTILES)`` (linear method) from the order statistics it interpolates."""
    n = values.size
    virtual = (n - 1) * np.true_divide(np.asarray(PERCENTILES), 100)
    previous = np.floor(virtual)
    following = previous + 1
    previous[virtual >= n - 1] = following[virtual >= n - 1] = -1  # NumPy's rule at the top end
    ranks = [int(r) % n for r in np.concatenate([previous, following])]
    found = _order_statistics(values, ranks)
    if found is None:
        return np.asarray(np.percentile(values, PERCENTILES))
    a, b = found[: len(PERCENTILES)], found[len(PERCENTILES) :]
    gamma = virtual - previous
    # NumPy's _lerp, operation for operation (float32 differences, float64 weights)
    difference = b - a
    result = np.add(a, difference * gamma)
    np.subtract(b, difference * (1 - gamma), out=result, where=gamma >= 0.5, casting="unsafe", dtype=result.dtype)
    return result


def _pairwise_sum_of_squares(values: np.ndarray, mean: np.ndarray, scratch: np.ndarray) -> np.float32:
    """``np.add.reduce((values - mean) ** 2)`` along NumPy's pairwise tree, one leaf in memory at a time."""
    n = values.size
    if n <= max(CHUNK, _PAIRWISE_BLOCK):  # NumPy sums up to 128 values without recursion
        leaf = scratch[:n]
        np.subtract(values, mean, out=leaf)
        np.square(leaf, out=leaf)
        return np.add.reduce(leaf)  # type: ignore[no-any-return]
    half = n // 2
    half -= half % 8  # NumPy's split: halves, rounded down to its unroll factor of 8
    return _pairwise_sum_of_squares(values[:half], mean, scratch) + _pairwise_sum_of_squares(
        values[half:], mean, scratch
    )  # type: ignore[no-any-return]


def _std(values: np.ndarray) -> np.floating:
    """``np.std(values)`` for contiguous float32 values, with a temporary of one leaf."""
    count = np.intp(values.size)
    mean = np.add.reduce(values, keepdims=True)
    np.true_divide(mean, count, out=mean, casting="unsafe")
    total = _pairwise_sum_of_squares(values, mean, np.empty(min(values.size, CHUNK), dtype=values.dtype))
    return np.sqrt(total.dtype.type(total / count))  # type: ignore[no-any-return]


def pooled_statistics(samples: np.ndarray) -> tuple[float, float, float, float, float, float, float]:
    """Return ``(mean, median, std, min, max, percentile_99_5, percentile_00_5)`` as NumPy computes them.

    Args:
        samples: 1-D array, at least one value; it is never modified.

    Returns:
        The values of ``np.mean``, ``np.percentile(.., 50)``, ``np.std``, ``np.min``, ``np.max`` and the
        99.5 / 0.5 percentiles (linear interpolation), as Python floats.
    """
    if samples.dtype != np.float32 or not samples.flags.c_contiguous:
        samples = np.ascontiguousarray(samples)
    mean = np.mean(samples)
    low, high = float(np.min(samples)), float(np.max(samples))
    if samples.dtype != np.float32 or not np.isfinite(mean):
        std = np.std(samples)
        p00_5, median, p99_5 = np.percentile(samples, PERCENTILES)
    elif low == high and low != 0.0:  # one value (a constant channel): every order statistic is that value
        std = _std(samples)
        p00_5 = median = p99_5 = low
    else:
        std = _std(samples)
        p00_5, median, p99_5 = _percentiles(samples)
    return float(mean), float(median), float(std), low, high, float(p99_5), float(p00_5)
