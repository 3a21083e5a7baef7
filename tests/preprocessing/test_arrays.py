"""The store's array format: chunk layout, atomic reproducible writes, region reads, pickle-free npz."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.preprocessing._arrays import (
    MAX_BLOCK_BYTES,
    MAX_CHUNK_BYTES,
    array_layout,
    read_array,
    read_npz,
    read_region,
    write_array,
    write_npz,
)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 400), st.integers(1, 600), st.integers(1, 600)),
    patch=st.one_of(
        st.tuples(st.integers(1, 256), st.integers(1, 256), st.integers(1, 256)),
        st.tuples(st.integers(1, 1024), st.integers(1, 1024)),
    ),  # fmt: skip
    itemsize=st.sampled_from([1, 2, 4]),
)
def test_layout_fits_array_and_byte_limits(shape: tuple[int, ...], patch: tuple[int, ...], itemsize: int) -> None:
    chunks, blocks = array_layout(shape, patch, itemsize)
    assert chunks[0] == 1
    assert blocks[0] == 1
    assert all(1 <= b <= c <= s for b, c, s in zip(blocks[1:], chunks[1:], shape[1:]))
    assert math.prod(blocks) * itemsize <= MAX_BLOCK_BYTES or max(blocks) == 1
    # a chunk may exceed the limit only when it is down to one block per axis
    assert (
        math.prod(chunks) * itemsize <= MAX_CHUNK_BYTES
        or chunks == blocks
        or math.prod(blocks) * itemsize > MAX_CHUNK_BYTES
    )


def test_layout_2d_patch_reads_one_slice() -> None:
    chunks, blocks = array_layout((1, 40, 420, 420), (448, 448), 4)
    assert chunks[1] == 1
    assert blocks[1] == 1


def test_layout_rejects_patch_of_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"patch_size \[8\] does not fit an array with 3 spatial axes"):
        array_layout((1, 8, 8, 8), (8,), 4)


def test_write_read_roundtrip_region_and_reproducible_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 20, 33, 41)).astype(np.float32)
    path = tmp_path / "x.data.b2nd"
    size = write_array(path, data, patch_size=(8, 16, 16))
    first = path.read_bytes()
    assert size == len(first)
    np.testing.assert_array_equal(read_array(path), data)
    index = (slice(None), slice(3, 11), slice(30, 33), slice(0, 17))
    np.testing.assert_array_equal(read_region(path, index), data[index])
    write_array(path, data, patch_size=(8, 16, 16))
    assert path.read_bytes() == first  # same array, same bytes (one compression thread)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.data.b2nd"]  # no temporary file left


def test_write_array_failure_leaves_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.seg.b2nd"
    seg = np.arange(2 * 8 * 8, dtype=np.int8).reshape(1, 2, 8, 8)
    write_array(path, seg, patch_size=(2, 8, 8))
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("nnseg.preprocessing._arrays.blosc2.asarray", boom)
    with pytest.raises(OSError, match="No space left"):
        write_array(path, seg + 1, patch_size=(2, 8, 8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.seg.b2nd"]


def test_npz_roundtrip_is_reproducible_and_pickle_free(tmp_path: Path) -> None:
    arrays = {"1": np.arange(12, dtype=np.int64).reshape(4, 3), "(1, 2)": np.zeros((0, 4), dtype=np.int64)}
    path = tmp_path / "c.locations.npz"
    write_npz(path, arrays)
    first = path.read_bytes()
    write_npz(path, arrays)
    assert path.read_bytes() == first
    loaded = read_npz(path)
    assert sorted(loaded) == sorted(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
    with pytest.raises(ValueError, match="pickle"):
        write_npz(tmp_path / "o.npz", {"bad": np.array([{"a": 1}], dtype=object)})


def test_file_bytes_do_not_depend_on_blosc2_global_threads(tmp_path: Path) -> None:
    import blosc2

    data = np.arange(2 * 10 * 10, dtype=np.float32).reshape(1, 2, 10, 10)
    before = blosc2.nthreads
    try:
        blosc2.set_nthreads(1)
        write_array(tmp_path / "a.b2nd", data, patch_size=(2, 8, 8))
        blosc2.set_nthreads(3)
        write_array(tmp_path / "b.b2nd", data, patch_size=(2, 8, 8))
    finally:
        blosc2.set_nthreads(before)
    assert (tmp_path / "a.b2nd").read_bytes() == (tmp_path / "b.b2nd").read_bytes()


def test_written_array_matches_finds_a_cut_file(tmp_path: Path) -> None:
    from nnseg.preprocessing._arrays import written_array_matches

    path = tmp_path / "x.data.b2nd"
    data = np.random.default_rng(0).standard_normal((1, 8, 32, 32)).astype(np.float32)
    write_array(path, data, patch_size=(4, 16, 16))
    assert written_array_matches(path, data)
    assert not written_array_matches(path, data + 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017, PT011 -- blosc2 raises several kinds on a cut frame
        written_array_matches(path, data)
