"""Foreground location sampling: where each label or region occurs in a preprocessed label map.

Training draws foreground patches around these voxels. The rules are nnU-Net v2's:

* Keys (:func:`location_classes`): the foreground regions (in ``dataset.json`` order) for region-based
  datasets, else the foreground labels (ascending); with an ignore label one more key
  ``(-1, *labels)`` (every annotated voxel, the ``-1`` outside region included, the ignore label excluded).
* One ``numpy.random.RandomState(seed)`` (seed 1234) per case, consumed by the keys in order; a key with no
  voxel draws nothing and maps to an empty ``(0, 4)`` array.
* A key with ``N`` voxels gets ``max(min(10000, N), ceil(0.01 * N))`` of them, uniformly without
  replacement (``RandomState.choice(N, k, replace=False)``). The ``N`` candidates are ordered label by label
  in the key's order, each label's voxels in C (row-major) order; so the drawn voxels are exactly nnU-Net's.

Keys are strings (see :mod:`nnseg.preprocessing._case`); values are int64 ``(N, 4)`` rows ``(0, z, y, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nnseg.dataset import DatasetSpec
from nnseg.errors import ConfigError
from nnseg.preprocessing._case import location_key

__all__ = [
    "LOCATION_SEED",
    "MAX_SAMPLES_PER_CLASS",
    "MIN_COVERAGE",
    "location_classes",
    "sample_class_locations",
]

LOCATION_SEED = 1234
"""Seed of the per-case random state (the same for every case, as in nnU-Net)."""
MAX_SAMPLES_PER_CLASS = 10000
"""Voxels kept per key unless 1 % of the key's voxels is more."""
MIN_COVERAGE = 0.01
"""Fraction of a key's voxels that is always kept."""


def _labels_without_ignore(spec: DatasetSpec) -> tuple[int, ...]:
    ignore = spec.ignore_label
    return tuple(v for v in spec.all_labels if v != ignore)


def location_classes(spec: DatasetSpec) -> tuple[int | tuple[int, ...], ...]:
    """Return the labels / regions whose voxels are sampled, in sampling order.

    Args:
        spec: The dataset's labels.

    Returns:
        Ints (labels) or tuples (regions); with an ignore label, a last ``(-1, *labels)`` entry.
    """
    classes: list[int | tuple[int, ...]] = []
    if spec.has_regions:
        for name, value in spec.labels.items():
            if name == "ignore":
                continue
            members = value if isinstance(value, tuple) else (value,)
            if all(member == 0 for member in members):
                continue
            classes.append(value)
    else:
        classes.extend(spec.foreground_labels)
    if spec.ignore_label is not None:
        classes.append((-1, *_labels_without_ignore(spec)))
    return tuple(classes)


def _label_runs(flat: np.ndarray, labels: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the flat indices of voxels carrying one of ``labels``, grouped by label, and their labels."""
    indices = np.flatnonzero(np.isin(flat, np.fromiter(labels, dtype=np.int64, count=len(labels))))
    values = flat[indices]
    order = np.argsort(values, kind="stable")
    return indices[order], values[order]


def sample_class_locations(
    seg: np.ndarray,
    classes: Sequence[int | tuple[int, ...]],
    *,
    seed: int = LOCATION_SEED,
    max_samples: int = MAX_SAMPLES_PER_CLASS,
    min_coverage: float = MIN_COVERAGE,
) -> dict[str, np.ndarray]:
    """Sample voxel coordinates of every label / region of a label map.

    Args:
        seg: Label map ``(1, z, y, x)`` in the preprocessed grid.
        classes: Labels (ints) or regions (tuples), usually :func:`location_classes`.
        seed: Seed of the random state.
        max_samples: Per key, keep at most this many voxels unless ``min_coverage`` asks for more.
        min_coverage: Per key, keep at least this fraction of its voxels (rounded up).

    Returns:
        ``{location_key(c): int64 array (N, 4) of (0, z, y, x)}`` for every ``c`` in ``classes``.

    Raises:
        ConfigError: If ``seg`` is not 4-D with one channel.
    """
    if seg.ndim != 4 or seg.shape[0] != 1:
        raise ConfigError(f"sample_class_locations expects a (1, z, y, x) label map; got shape {seg.shape}.")
    members = [tuple(int(v) for v in c) if isinstance(c, tuple) else (int(c),) for c in classes]
    wanted = {label for group in members for label in group}
    sorted_indices, sorted_labels = _label_runs(seg.reshape(-1), wanted)
    rng = np.random.RandomState(seed)
    locations: dict[str, np.ndarray] = {}
    for cls, group in zip(classes, members):
        parts = [
            sorted_indices[
                np.searchsorted(sorted_labels, label, "left") : np.searchsorted(sorted_labels, label, "right")
            ]
            for label in group
        ]
        candidates = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        chosen = _draw(candidates, rng, max_samples, min_coverage)
        locations[location_key(cls)] = np.stack(np.unravel_index(chosen, seg.shape), axis=1).astype(np.int64)
    return locations


def _draw(candidates: np.ndarray, rng: np.random.RandomState, max_samples: int, min_coverage: float) -> np.ndarray:
    """Draw ``max(min(max_samples, N), ceil(N * min_coverage))`` of the ``N`` candidates without replacement."""
    total = len(candidates)
    if total == 0:  # no draw, so the random state stays where it is
        return candidates
    count = max(min(max_samples, total), math.ceil(total * min_coverage))
    return candidates[rng.choice(total, count, replace=False)]
