"""``Split``: which cases train and which validate, with exactly nnU-Net's folds.

nnU-Net sorts the case ids and splits them with a shuffled 5-fold split seeded with 12345 (scikit-learn's
``KFold``), writing ``splits_final.json``; a fold beyond the listed ones gets a seeded random 80:20 split.
nnseg computes the same folds without scikit-learn, so fold ``k`` here is fold ``k`` there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nnseg._atomic import atomic_write_json
from nnseg.errors import ConfigError

__all__ = ["Split", "kfold_splits", "split_for_fold", "write_splits_file"]

DEFAULT_NUM_FOLDS = 5
DEFAULT_SPLIT_SEED = 12345
Fold = int | Literal["all"]


@dataclass(frozen=True)
class Split:
    """The training and validation case ids of one fold.

    Args:
        train: Training case ids.
        val: Validation case ids.
        fold: The fold number, ``"all"`` (train = val = every case), or None for a custom split.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    fold: Fold | None = None

    def __post_init__(self) -> None:
        if not self.train:
            raise ConfigError(f"Split (fold {self.fold}): no training cases; expected at least one case id.")

    @classmethod
    def kfold(
        cls, case_ids: Iterable[str], fold: Fold, *, num_folds: int = DEFAULT_NUM_FOLDS, seed: int = DEFAULT_SPLIT_SEED
    ) -> Split:
        """Fold ``fold`` of nnU-Net's cross-validation over ``case_ids``.

        Args:
            case_ids: The case ids (any order; they are sorted, as nnU-Net does).
            fold: ``0 .. num_folds - 1``; ``"all"`` trains and validates on every case; a larger integer
                gives nnU-Net's seeded random 80:20 split for that fold.
            num_folds: Number of cross-validation folds.
            seed: Shuffle seed (nnU-Net: 12345).

        Raises:
            ConfigError: If ``fold`` is negative or not an int/"all", or there are fewer cases than folds.
        """
        ids = sorted(set(case_ids))
        if fold == "all":
            return cls(tuple(ids), tuple(ids), "all")
        if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or fold < 0:
            raise ConfigError(f"Split.kfold: fold must be 'all' or an integer >= 0; got {fold!r}.")
        if fold < num_folds:
            return kfold_splits(ids, num_folds=num_folds, seed=seed)[int(fold)]
        return _random_split(ids, int(fold), seed)

    @classmethod
    def from_splits_file(cls, path: str | os.PathLike[str], fold: int) -> Split:
        """Fold ``fold`` of an nnU-Net ``splits_final.json`` (a list of ``{"train": [...], "val": [...]}``).

        Raises:
            ConfigError: If the file is unreadable, malformed, or has no such fold.
        """
        path = Path(path)
        entries = _read_entries(path)
        if not 0 <= fold < len(entries):
            raise ConfigError(f"{path} holds {len(entries)} fold(s) (0..{len(entries) - 1}); got fold {fold}.")
        entry = entries[fold]
        return cls(tuple(entry["train"]), tuple(entry["val"]), fold)

    def check_cases(self, available: Iterable[str], where: str) -> None:
        """Raise a ConfigError naming every split case missing from ``available`` (e.g. a store's case ids)."""
        have = set(available)
        missing = sorted({*self.train, *self.val} - have)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise ConfigError(
                f"the split (fold {self.fold}) names {len(missing)} case(s) that {where} lacks: {shown}. "
                "Preprocess those cases, or build the split from the available case ids."
            )

    def to_json(self) -> dict[str, Any]:
        """Return ``{"fold": ..., "train": [...], "val": [...]}``."""
        return {"fold": self.fold, "train": list(self.train), "val": list(self.val)}

    @classmethod
    def from_json(cls, data: Any) -> Split:
        """Inverse of :meth:`to_json`.

        Raises:
            ConfigError: If ``data`` is not ``{"train": [...], "val": [...], "fold": ...}`` with string case ids
                and a fold that is None, ``"all"`` or an integer >= 0, or has no training case.
        """
        fold = data.get("fold") if isinstance(data, dict) else None
        fold_ok = fold is None or fold == "all" or (isinstance(fold, int) and not isinstance(fold, bool) and fold >= 0)
        if not _is_split_entry(data) or not fold_ok:
            raise ConfigError(
                f'a split must be {{"train": [case ids], "val": [case ids], "fold": null, "all" or an '
                f"integer >= 0}}; got {_short(data)}. Rewrite it with Split.to_json() (or use a new run folder)."
            )
        return cls(tuple(data["train"]), tuple(data["val"]), fold)


def kfold_splits(
    case_ids: Sequence[str], *, num_folds: int = DEFAULT_NUM_FOLDS, seed: int = DEFAULT_SPLIT_SEED
) -> list[Split]:
    """All ``num_folds`` folds of nnU-Net's shuffled k-fold split over the sorted ``case_ids``.

    Equal to scikit-learn's ``KFold(num_folds, shuffle=True, random_state=seed)`` on the sorted ids: the
    indices are shuffled once, the first ``n % num_folds`` folds get one extra case, and both lists of a
    fold are in sorted order.

    Raises:
        ConfigError: If there are fewer cases than folds or ``num_folds < 2``.
    """
    ids = sorted(set(case_ids))
    if num_folds < 2 or len(ids) < num_folds:
        raise ConfigError(
            f"k-fold split: {len(ids)} case(s) cannot be split into {num_folds} folds; expected num_folds >= 2 and "
            "at least one case per fold. Use fold='all' or fewer folds."
        )
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(num_folds, len(ids) // num_folds)
    sizes[: len(ids) % num_folds] += 1
    splits, start = [], 0
    for fold, size in enumerate(sizes):
        val_idx = set(order[start : start + size].tolist())
        start += size
        train = tuple(c for i, c in enumerate(ids) if i not in val_idx)
        val = tuple(c for i, c in enumerate(ids) if i in val_idx)
        splits.append(Split(train, val, fold))
    return splits


def write_splits_file(path: str | os.PathLike[str], splits: Sequence[Split]) -> None:
    """Write ``splits`` as nnU-Net's ``splits_final.json`` (atomically)."""
    atomic_write_json(Path(path), [{"train": list(s.train), "val": list(s.val)} for s in splits])


def split_for_fold(
    case_ids: Iterable[str], fold: Fold, splits_file: str | os.PathLike[str], *, write: bool = True
) -> Split:
    """Fold ``fold`` as nnU-Net's ``do_split`` chooses it, reading or creating ``splits_file``.

    ``"all"`` trains and validates on every case. Otherwise the folds come from ``splits_file`` (nnU-Net's
    ``splits_final.json``: nnseg's ``WORK/splits_final.json`` and nnU-Net's preprocessed folder hold the same
    file); a missing file is created with nnU-Net's 5 folds over ``case_ids`` (when ``write``). A fold beyond
    the file's gets nnU-Net's seeded random 80:20 split.

    Args:
        case_ids: The available cases (the preprocessed store's).
        fold: ``0, 1, ...`` or ``"all"``.
        splits_file: Where the splits live.
        write: Create the file when it is missing (False on DDP ranks other than 0).

    Raises:
        ConfigError: If the file is malformed, or names cases that ``case_ids`` lacks (naming the file and the
            cases), or ``fold`` is invalid.
    """
    ids = sorted(set(case_ids))
    path = Path(splits_file)
    if fold == "all":
        return Split.kfold(ids, "all")
    if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or fold < 0:
        raise ConfigError(f"split: fold must be 'all' or an integer >= 0; got {fold!r}.")
    if not path.is_file():
        splits = kfold_splits(ids)
        if write:
            write_splits_file(path, splits)
        return splits[int(fold)] if fold < len(splits) else _random_split(ids, int(fold), DEFAULT_SPLIT_SEED)
    count = len(_read_entries(path))
    split = (
        Split.from_splits_file(path, int(fold)) if fold < count else _random_split(ids, int(fold), DEFAULT_SPLIT_SEED)
    )
    check_split_cases(split, ids, path)
    return split


def check_split_cases(split: Split, available: Iterable[str], path: Path) -> None:
    """Raise a ConfigError naming ``path`` and every case of ``split`` missing from ``available``."""
    missing = sorted({*split.train, *split.val} - set(available))
    if missing:
        shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(
            f"the splits file {path} names {len(missing)} case(s) (fold {split.fold}) that the preprocessed store "
            f"lacks: {shown}. Fix the file, delete it to get nnU-Net's folds over the store's cases, or preprocess "
            "those cases."
        )


def _random_split(ids: list[str], fold: int, seed: int) -> Split:
    """nnU-Net's fallback for a fold beyond the k folds: a seeded random 80:20 split."""
    rng = np.random.RandomState(seed + fold)
    train_idx = rng.choice(len(ids), int(len(ids) * 0.8), replace=False)
    chosen = set(train_idx.tolist())
    return Split(tuple(ids[i] for i in train_idx), tuple(c for i, c in enumerate(ids) if i not in chosen), fold)


def _read_entries(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the splits file {path}: {err}; expected nnU-Net's splits_final.json.") from err
    if not isinstance(entries, list) or not all(_is_split_entry(e) for e in entries):
        raise ConfigError(
            f'{path}: expected a JSON list of {{"train": [...], "val": [...]}} objects (nnU-Net\'s splits_final.json).'
        )
    return entries


def _is_split_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("train"), list)
        and isinstance(entry.get("val"), list)
        and all(isinstance(c, str) for c in entry["train"] + entry["val"])
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
