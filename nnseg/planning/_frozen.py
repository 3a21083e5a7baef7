"""Immutable JSON-like values for plans: a read-only mapping, freezing, JSON export and hashing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["FrozenMap", "canonical_json", "freeze", "short_hash", "to_jsonable"]

HASH_LENGTH = 16


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable, picklable mapping that keeps insertion order.

    Args:
        data: The items; values should already be frozen (see :func:`freeze`).
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(canonical_json(self))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only; build a new mapping instead")

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __getstate__(self) -> dict[str, Any]:
        return self._data

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", state)


def freeze(value: Any) -> Any:
    """Return ``value`` with mappings turned into :class:`FrozenMap` and lists into tuples, recursively.

    NumPy scalars and arrays become Python numbers and tuples.
    """
    if isinstance(value, Mapping):
        return FrozenMap({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, np.ndarray):
        return freeze(value.tolist())
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_jsonable(value: Any) -> Any:
    """Return a plain JSON value: mappings to dicts, tuples to lists, NumPy values to Python values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def canonical_json(value: Any) -> str:
    """Return a canonical JSON text of ``value`` for hashing and comparing.

    Keys are sorted, whitespace is dropped, tuples are lists and every number is written as a float, so
    values Python considers equal (``[1, 2]`` and ``(1.0, 2.0)``) give the same text.
    """
    plain = _numbers_as_float(to_jsonable(value))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), allow_nan=True)


def short_hash(value: Any) -> str:
    """Return the first 16 hex digits of the SHA-256 of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:HASH_LENGTH]
