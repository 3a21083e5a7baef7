"""Random layouts for the synthetic generator: an ellipsoidal body and the labelled blobs inside it.

Everything is placed in voxel coordinates of one case, so the layout does not depend on the spacing. A
structure is an axis-aligned ellipsoid whose surface may be perturbed by a few smooth waves ("wobble"),
which turns it into a blob. Masks are evaluated only inside each blob's bounding box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Blob", "Layout", "blob_mask", "paint_labels", "sample_layout"]

BODY_RADIUS_RANGE = (0.36, 0.42)
"""Body semi-axes as a fraction of the image extent, per axis (the body never fills the box)."""
BODY_OFFSET = 0.03
"""Largest shift of the body centre from the image centre, as a fraction of the extent."""
ORGAN_RADIUS_RANGE = (0.40, 0.55)
"""Semi-axes of the large organ (label 1) as a fraction of the body semi-axes."""
MEDIUM_RADIUS_RANGE = (0.26, 0.36)
"""Semi-axes of the further structures (labels 3, 4, ...) as a fraction of the body semi-axes."""
LESION_RADIUS_RANGE = (0.15, 0.21)
"""Semi-axes of the small lesion (label 2, inside the organ) as a fraction of the body semi-axes."""
MIN_RADIUS_VOXELS = 1.0
"""No semi-axis is shorter than this, so that every structure covers at least one voxel."""
WOBBLE = 0.25
"""Relative amplitude of the surface perturbation of the organ and the further structures."""
PLACEMENT_TRIES = 64


@dataclass(frozen=True, eq=False)
class Blob:
    """A perturbed ellipsoid in voxel coordinates.

    Args:
        center: Centre, one coordinate per spatial axis (array order).
        radii: Semi-axes in voxels.
        wobble: Relative amplitude of the surface perturbation (0 gives an exact ellipsoid).
        wave_vectors: ``(num_waves, ndim)`` frequencies of the perturbation in ellipsoid-normalised units.
        phases: ``(num_waves,)`` phases of the perturbation.
    """

    center: np.ndarray
    radii: np.ndarray
    wobble: float = 0.0
    wave_vectors: np.ndarray | None = None
    phases: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Layout:
    """The body and one blob per foreground label (``structures[k - 1]`` has label ``k``)."""

    body: Blob
    structures: tuple[Blob, ...]


def blob_mask(blob: Blob, shape: Sequence[int]) -> tuple[tuple[slice, ...], np.ndarray]:
    """Return ``(box, mask)``: the blob's bounding box in ``shape`` and its boolean mask inside that box."""
    reach = blob.radii / np.sqrt(1.0 - blob.wobble) + 1.0
    box = tuple(
        slice(int(max(0, np.floor(c - r))), int(min(n, np.ceil(c + r) + 1)))
        for c, r, n in zip(blob.center, reach, shape)
    )
    grids = np.ogrid[box]
    normalised = [((g - c) / r).astype(np.float32) for g, c, r in zip(grids, blob.center, blob.radii)]
    distance2 = sum((w * w for w in normalised), np.zeros((1,) * len(shape), np.float32))
    if blob.wobble > 0.0 and blob.wave_vectors is not None and blob.phases is not None:
        waves = np.zeros((1,) * len(shape), np.float32)
        for vector, phase in zip(blob.wave_vectors, blob.phases):
            argument = sum((k * w for k, w in zip(vector, normalised)), np.float32(phase))
            waves = waves + np.sin(argument)
        distance2 = distance2 * (1.0 + blob.wobble * waves / len(blob.phases))
    return box, distance2 < 1.0


def paint_labels(layout: Layout, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a layout into ``(body mask, uint8 label map)``.

    Structures are clipped to the body. The organ is painted first, then labels 3, 4, ..., and the lesion
    (label 2) last, so the small structure is never covered by another one.
    """
    body_box, body_in_box = blob_mask(layout.body, shape)
    body = np.zeros(tuple(shape), dtype=bool)
    body[body_box] = body_in_box
    labels = np.zeros(tuple(shape), dtype=np.uint8)
    order = [1, *range(3, len(layout.structures) + 1)] + ([2] if len(layout.structures) >= 2 else [])
    for label in order:
        box, mask = blob_mask(layout.structures[label - 1], shape)
        labels[box][mask & body[box]] = label
    return body, labels


def _random_in_ball(rng: np.random.Generator, ndim: int, radius: float) -> np.ndarray:
    direction = rng.standard_normal(ndim)
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    return direction * max(radius, 0.0) * rng.uniform() ** (1.0 / ndim)


def _wobbly(center: np.ndarray, radii: np.ndarray, rng: np.random.Generator) -> Blob:
    ndim = len(center)
    return Blob(
        center=center,
        radii=np.maximum(radii, MIN_RADIUS_VOXELS),
        wobble=WOBBLE,
        wave_vectors=rng.normal(0.0, 2.0, size=(2, ndim)),
        phases=rng.uniform(0.0, 2.0 * np.pi, size=2),
    )


def _place(rng: np.random.Generator, relative_radii: np.ndarray, placed: list[tuple[np.ndarray, float]]) -> np.ndarray:
    """Pick a centre in body-normalised units that keeps the blob inside the body and apart from others.

    Tries a few random centres and keeps the one with the largest clearance; overlap is accepted when
    nothing fits (the caller checks that every label is still visible).
    """
    size = float(relative_radii.max())
    best, best_gap = np.zeros(len(relative_radii)), -np.inf
    for _ in range(PLACEMENT_TRIES):
        candidate = _random_in_ball(rng, len(relative_radii), 0.92 - size)
        gaps = [float(np.linalg.norm(candidate - c)) - size - s - 0.05 for c, s in placed]
        gap = min(gaps, default=np.inf)
        if gap > best_gap:
            best, best_gap = candidate, gap
        if gap >= 0.0:
            break
    placed.append((best, size))
    return best


def sample_layout(
    shape: Sequence[int], num_classes: int, rng: np.random.Generator, *, lesion_scale: float = 1.0
) -> Layout:
    """Draw a body and ``num_classes - 1`` structures for an image of the given spatial shape.

    Label 1 is a large organ, label 2 (when ``num_classes >= 3``) a small lesion inside the organ, and
    labels 3, 4, ... medium-sized structures elsewhere in the body. ``lesion_scale`` multiplies the
    lesion's semi-axes (the random draws stay the same, so 1.0 reproduces the default layout).
    """
    extent = np.asarray(shape, dtype=float)
    ndim = len(extent)
    body_center = (extent - 1.0) / 2.0 + rng.uniform(-BODY_OFFSET, BODY_OFFSET, ndim) * extent
    body_radii = extent * rng.uniform(*BODY_RADIUS_RANGE, ndim)
    body = Blob(center=body_center, radii=body_radii)
    placed: list[tuple[np.ndarray, float]] = []

    def in_body(relative_center: np.ndarray, relative_radii: np.ndarray) -> Blob:
        return _wobbly(body_center + relative_center * body_radii, relative_radii * body_radii, rng)

    organ_relative = rng.uniform(*ORGAN_RADIUS_RANGE, ndim)
    organ = in_body(_place(rng, organ_relative, placed), organ_relative)
    num_medium = max(num_classes - 3, 0)
    shrink = min(1.0, (2.0 / max(num_medium, 1)) ** (1.0 / ndim))
    medium: list[Blob] = []
    for _ in range(num_medium):
        relative = rng.uniform(*MEDIUM_RADIUS_RANGE, ndim) * shrink
        medium.append(in_body(_place(rng, relative, placed), relative))
    structures = [organ]
    if num_classes >= 3:
        structures.append(_lesion_in(organ, body_radii, rng, lesion_scale))
    return Layout(body=body, structures=tuple(structures + medium))


def _lesion_in(organ: Blob, body_radii: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> Blob:
    """A small exact ellipsoid placed inside the organ (``scale`` times the usual size)."""
    ndim = len(body_radii)
    radii = np.maximum(rng.uniform(*LESION_RADIUS_RANGE, ndim) * body_radii * scale, MIN_RADIUS_VOXELS)
    room = 0.85 - float((radii / organ.radii).max())
    center = organ.center + _random_in_ball(rng, ndim, room) * organ.radii
    return Blob(center=center, radii=radii)
