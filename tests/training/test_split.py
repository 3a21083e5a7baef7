"""Split: nnU-Net's 5-fold cross-validation, fold 'all', the random fallback, and splits files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import ConfigError
from nnseg.training._split import Split, kfold_splits, write_splits_file

IDS = st.lists(st.text("abcdefgh0123456789_", min_size=1, max_size=8), min_size=5, max_size=40, unique=True)


@given(IDS)
def test_folds_partition_the_cases(ids: list[str]) -> None:
    splits = kfold_splits(ids)
    vals = [c for s in splits for c in s.val]
    assert sorted(vals) == sorted(ids)
    sizes = [len(s.val) for s in splits]
    assert max(sizes) - min(sizes) <= 1
    for s in splits:
        assert set(s.train) | set(s.val) == set(ids)
        assert not set(s.train) & set(s.val)
        assert list(s.train) == sorted(s.train)
        assert list(s.val) == sorted(s.val)


def test_fold_does_not_depend_on_input_order() -> None:
    ids = [f"case_{i:03d}" for i in range(17)]
    assert Split.kfold(ids, 2) == Split.kfold(list(reversed(ids)), 2)


def test_fold_all_and_random_fallback() -> None:
    ids = [f"c{i}" for i in range(10)]
    every = Split.kfold(ids, "all")
    assert every.train == every.val == tuple(sorted(ids))
    extra = Split.kfold(ids, 7)
    assert len(extra.train) == 8
    assert len(extra.val) == 2
    assert not set(extra.train) & set(extra.val)
    assert Split.kfold(ids, 7) == extra


def test_bad_folds() -> None:
    with pytest.raises(ConfigError, match=r"fold must be 'all' or an integer >= 0; got -1"):
        Split.kfold(["a", "b", "c", "d", "e"], -1)
    with pytest.raises(ConfigError, match=r"3 case\(s\) cannot be split into 5 folds"):
        Split.kfold(["a", "b", "c"], 0)


def test_splits_file_round_trip_and_errors(tmp_path: Path) -> None:
    ids = [f"c{i}" for i in range(12)]
    path = tmp_path / "splits_final.json"
    write_splits_file(path, kfold_splits(ids))
    assert Split.from_splits_file(path, 3) == Split.kfold(ids, 3)
    with pytest.raises(ConfigError, match=r"holds 5 fold\(s\) \(0\.\.4\); got fold 5"):
        Split.from_splits_file(path, 5)
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(ConfigError, match=r"expected a JSON list of"):
        Split.from_splits_file(path, 0)


def test_check_cases_names_the_missing_ones() -> None:
    split = Split(("a", "b"), ("c",), 0)
    split.check_cases(["a", "b", "c", "d"], "the store")
    with pytest.raises(ConfigError, match=r"names 1 case\(s\) that the store lacks: 'c'"):
        split.check_cases(["a", "b"], "the store")


@pytest.mark.parity
@settings(max_examples=20, deadline=None)
@given(IDS)
def test_folds_equal_nnunets(ids: list[str]) -> None:
    crossval = pytest.importorskip("nnunetv2.utilities.crossval_split")
    reference = crossval.generate_crossval_split(sorted(ids), seed=12345, n_splits=5)
    ours = kfold_splits(ids)
    assert [{"train": list(s.train), "val": list(s.val)} for s in ours] == [
        {"train": list(r["train"]), "val": list(r["val"])} for r in reference
    ]


def test_split_for_fold_creates_reads_and_falls_back_as_nnunet(tmp_path: Path) -> None:
    from nnseg.training._split import _random_split, split_for_fold

    ids = [f"c{i}" for i in range(7)]
    path = tmp_path / "splits_final.json"
    assert split_for_fold(ids, 2, path, write=False) == kfold_splits(ids)[2]
    assert not path.exists()
    assert split_for_fold(ids, 2, path) == kfold_splits(ids)[2]
    assert json.loads(path.read_text())[2]["val"] == list(kfold_splits(ids)[2].val)
    path.write_text(json.dumps([{"train": ["c0", "c1"], "val": ["c2"]}]))
    assert split_for_fold(ids, 0, path) == Split(("c0", "c1"), ("c2",), 0)  # the file wins over computed folds
    beyond = split_for_fold(ids, 1, path)  # past the file's folds: nnU-Net's seeded 80:20 split
    assert beyond == _random_split(ids, 1, 12345)
    assert (len(beyond.train), len(beyond.val)) == (5, 2)
    assert split_for_fold(ids, "all", path).val == tuple(ids)
    with pytest.raises(ConfigError, match=r"splits_final.json names 1 case\(s\) \(fold 0\) .* lacks: 'c2'"):
        split_for_fold(["c0", "c1", "c3"], 0, path)


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-2, 7) | st.text(max_size=4),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                            st.sampled_from(["train", "val", "fold", "x"]), inner, max_size=4),
                        max_leaves=12)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=_JSONISH | st.fixed_dictionaries({"train": st.lists(st.text(max_size=3), max_size=3),
                                               "val": st.lists(st.text(max_size=3), max_size=3)},
                                              optional={"fold": _JSONISH}))  # fmt: skip
def test_fuzzed_split_json_gives_a_split_or_a_config_error(data: object) -> None:
    try:
        split = Split.from_json(data)  # type: ignore[arg-type]
    except ConfigError:
        return
    assert Split.from_json(split.to_json()) == split


@pytest.mark.parametrize(
    "data",
    [
        {"val": []},
        {"train": ["a"]},
        ["a"],
        None,
        {"train": ["a"], "val": [1]},
        {"train": ["a"], "val": [], "fold": -1},
        {"train": ["a"], "val": [], "fold": True},
    ],
)
def test_malformed_split_json_is_a_config_error(data: object) -> None:
    with pytest.raises(
        ConfigError,
        match=r"a split must be \{\"train\": \[case ids\], \"val\": \[case ids\], \"fold\": "
        r"null, \"all\" or an integer >= 0\}; got .*Rewrite it with Split\.to_json",
    ):
        Split.from_json(data)  # type: ignore[arg-type]
