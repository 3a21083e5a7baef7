"""Keep-largest-component: properties (never adds voxels, idempotent, ties kept, full connectivity)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage

from nnseg.postprocessing import keep_largest_component, keep_largest_component_of

masks_3d = arrays(np.bool_, st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)))
label_maps = arrays(np.uint8, st.tuples(st.just(1), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
                    elements=st.integers(0, 3))  # fmt: skip


@settings(max_examples=60)
@given(masks_3d)
def test_keep_largest_never_adds_voxels_and_is_idempotent(mask: np.ndarray) -> None:
    kept = keep_largest_component(mask)
    assert not (kept & ~mask).any()
    assert np.array_equal(keep_largest_component(kept), kept)
    assert kept.any() == mask.any()


@settings(max_examples=60)
@given(masks_3d)
def test_every_largest_component_is_kept_and_no_smaller_one(mask: np.ndarray) -> None:
    components, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    kept = keep_largest_component(mask)
    if count == 0:
        assert not kept.any()
        return
    sizes = np.bincount(components.ravel())[1:]
    for index, size in enumerate(sizes, start=1):
        inside = kept[components == index]
        assert inside.all() if size == sizes.max() else not inside.any()


def test_ties_keep_all_largest_components() -> None:
    mask = np.zeros((1, 5, 5), bool)
    mask[0, 0, 0:2] = True
    mask[0, 4, 3:5] = True
    mask[0, 2, 2] = True  # smaller, not touching the others diagonally
    kept = keep_largest_component(mask)
    assert kept[0, 0, 0:2].all()
    assert kept[0, 4, 3:5].all()
    assert not kept[0, 2, 2]


def test_diagonal_neighbours_are_connected_in_3d_and_2d() -> None:
    mask = np.zeros((4, 4, 4), bool)
    mask[0, 0, 0] = mask[1, 1, 1] = mask[2, 2, 2] = True  # corner-to-corner: one component under 26-connectivity
    mask[0, 3, 3] = True  # two voxels away from every other: its own component
    kept = keep_largest_component(mask)
    assert kept[0, 0, 0]
    assert kept[1, 1, 1]
    assert kept[2, 2, 2]
    assert not kept[0, 3, 3]
    flat = np.zeros((1, 4, 4), bool)  # 2D (1, y, x): 8-connectivity
    flat[0, 0, 0] = flat[0, 1, 1] = flat[0, 3, 3] = True
    assert keep_largest_component(flat).sum() == 2


@settings(max_examples=40)
@given(label_maps, st.sampled_from([(1,), (2,), (1, 2), ((1, 2),), ((2, 3), 1)]))
def test_removed_voxels_become_background_and_others_are_untouched(seg: np.ndarray, labels: tuple) -> None:
    result = keep_largest_component_of(seg, labels)
    changed = result != seg
    assert (result[changed] == 0).all()
    values = {v for label in labels for v in (label if isinstance(label, tuple) else (label,))}
    assert np.isin(seg[changed], sorted(values)).all()
    assert np.array_equal(keep_largest_component_of(result, labels), result)
