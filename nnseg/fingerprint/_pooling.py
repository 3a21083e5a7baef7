"""Pool per-case results into a :class:`Fingerprint` without holding more copies of the samples than needed.

Memory: the pooled samples of one channel are ``num_cases_with_foreground * num_samples`` float32 values
(at most 1e8, i.e. 400 MB, with nnU-Net's default). Samples are written straight into one preallocated array
per channel as cases finish (in memory), or read channel by channel from the cache (with a cache only one
channel is in memory at a time). The statistics read the pooled array without copying or reordering it
and need only small temporaries (:mod:`nnseg.fingerprint._stats`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from nnseg.errors import FingerprintError
from nnseg.fingerprint._fingerprint import CaseFingerprint, Fingerprint, IntensityStats

__all__ = ["SampleBuffer", "pool_fingerprint"]


class SampleBuffer:
    """One preallocated float32 array per channel that case results are copied into as they arrive.

    Case ``i`` owns the slot ``[i * num_samples, (i + 1) * num_samples)``; :meth:`channel` closes the gaps
    left by cases without foreground, in case order, so the pooled array equals the concatenation of the
    cases' samples in case order whatever order they arrived in. Pages of unused slots are never touched.

    Args:
        num_channels: Image channels.
        num_cases: Number of cases (slots).
        num_samples: Samples per case and channel.
    """

    def __init__(self, num_channels: int, num_cases: int, num_samples: int) -> None:
        self.num_samples = num_samples
        self._rows = [np.empty(num_cases * num_samples, dtype=np.float32) for _ in range(num_channels)]
        self._filled = np.zeros(num_cases, dtype=bool)

    def put(self, index: int, samples: np.ndarray) -> None:
        """Copy the ``(c, num_samples)`` samples of case ``index`` (``(c, 0)`` for no foreground)."""
        if samples.shape[1] == 0:
            return
        start = index * self.num_samples
        for row, values in zip(self._rows, samples):
            row[start : start + self.num_samples] = values
        self._filled[index] = True

    def slot(self, index: int) -> list[np.ndarray]:
        """The per-channel views case ``index`` may draw its samples into (then :meth:`mark` it)."""
        start = index * self.num_samples
        return [row[start : start + self.num_samples] for row in self._rows]

    def mark(self, index: int) -> None:
        """Record that case ``index`` filled its :meth:`slot`."""
        self._filled[index] = True

    def channel(self, channel: int) -> np.ndarray:
        """Return the pooled samples of ``channel`` (a view; the buffer's row is compacted in place)."""
        row, end = self._rows[channel], 0
        for index in np.flatnonzero(self._filled):
            start = int(index) * self.num_samples
            if start != end:
                row[end : end + self.num_samples] = row[start : start + self.num_samples]
            end += self.num_samples
        return row[:end]

    def release(self, channel: int) -> None:
        """Free the memory of ``channel`` once its statistics are computed."""
        self._rows[channel] = np.empty(0, dtype=np.float32)


def pool_fingerprint(
    case_ids: Sequence[str],
    results: Sequence[CaseFingerprint],
    channel_names: Sequence[str],
    channel_samples: Callable[[int], np.ndarray],
    release: Callable[[int], None] | None = None,
) -> Fingerprint:
    """Build the dataset fingerprint from per-case results (samples supplied one channel at a time).

    Args:
        case_ids: Case ids, in case order.
        results: One result per case (only metadata is used; samples come from ``channel_samples``).
        channel_names: The dataset's channel names, for messages.
        channel_samples: Returns the pooled samples of a channel, in case order; it may be modified.
        release: Called with a channel index once its statistics are computed.

    Raises:
        FingerprintError: If no case has a foreground voxel.
    """
    if not any(result.has_foreground for result in results):
        raise FingerprintError(
            f"no foreground: none of the {len(results)} training case(s) has a voxel with label > 0 (after "
            "cropping to the nonzero image region), so there are no foreground intensities to compute "
            "normalisation statistics from. Check that labelsTr holds the label maps (not empty masks) and "
            "that they overlap the nonzero part of the images."
        )
    stats = []
    for channel, name in enumerate(channel_names):
        samples = channel_samples(channel)
        stats.append(IntensityStats.from_samples(samples))
        del samples
        if release is not None:
            release(channel)
        if stats[-1].std == 0:
            warnings.warn(
                f"channel {channel} ({name!r}) has the same foreground intensity {stats[-1].mean:g} in every "
                "sampled voxel (std 0): it carries no information for training, and its normalisation divides "
                "by a standard deviation clamped to 1e-8 (CT normalisation turns any other value into a huge "
                "number). Check that the channel files hold the intended images.",
                stacklevel=4,
            )
    return Fingerprint(
        spacings=tuple(result.spacing for result in results),
        shapes_after_crop=tuple(result.shape_after_crop for result in results),
        intensity_stats=tuple(stats),
        median_relative_size_after_cropping=float(np.median([r.relative_size_after_cropping for r in results])),
        case_ids=tuple(case_ids),
    )
