"""``Shard`` splits case ids exactly like nnU-Net's ``-num_parts/-part_id``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnseg.errors import ConfigError, NnsegError
from nnseg.sharding import Shard

ids = st.lists(st.text(alphabet="abcdefgh_0123456789", min_size=1, max_size=8), unique=True, max_size=60)


@given(case_ids=ids, count=st.integers(1, 9))
def test_parts_are_disjoint_and_cover_everything(case_ids: list[str], count: int) -> None:
    parts = [Shard(i, count).select(case_ids) for i in range(count)]
    flat = [c for part in parts for c in part]
    assert sorted(flat) == sorted(case_ids)
    assert len(flat) == len(set(flat))


@given(case_ids=ids, count=st.integers(1, 9))
def test_part_sizes_differ_by_at_most_one(case_ids: list[str], count: int) -> None:
    sizes = [len(Shard(i, count).select(case_ids)) for i in range(count)]
    assert max(sizes) - min(sizes) <= 1


@given(case_ids=ids, count=st.integers(1, 9), data=st.data())
def test_result_does_not_depend_on_input_order(case_ids: list[str], count: int, data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(case_ids))
    index = data.draw(st.integers(0, count - 1))
    assert Shard(index, count).select(shuffled) == Shard(index, count).select(case_ids)


@given(case_ids=ids, count=st.integers(1, 9), data=st.data())
def test_matches_nnunet_strided_assignment(case_ids: list[str], count: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, count - 1))
    # nnU-Net: np.unique (sorted) identifiers, then cases[part_id::num_parts]
    assert Shard(index, count).select(case_ids) == sorted(case_ids)[index::count]


def test_whole_shard_owns_everything() -> None:
    assert Shard.whole().select(["b", "a"]) == ["a", "b"]
    assert Shard.whole().is_whole
    assert str(Shard(1, 4)) == "part 1 of 4"


@pytest.mark.parametrize(
    ("index", "count", "message"),
    [
        (2, 2, r"Shard: index must be an integer in \[0, 1\]; got 2\. Choose index between 0 and 1"),
        (-1, 3, r"Shard: index must be an integer in \[0, 2\]; got -1"),
        (0, 0, r"Shard: count must be an integer >= 1; got 0\. Set count=1 or more"),
        (0, -2, r"Shard: count must be an integer >= 1; got -2"),
        ("0", 2, r"Shard: index must be an integer in \[0, 1\]; got '0'"),
        (0, 2.0, r"Shard: count must be an integer >= 1; got 2.0"),
        (True, 2, r"Shard: index must be an integer in \[0, 1\]; got True"),
    ],
)
def test_invalid_shards_are_rejected(index: object, count: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Shard(index, count)  # type: ignore[arg-type]
    assert isinstance(info.value, NnsegError)
    assert isinstance(info.value, ValueError)
