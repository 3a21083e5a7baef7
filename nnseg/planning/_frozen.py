"""Immutable JSON-like values for plans: a read-only mapping and freezing (hashing lives in nnseg._hashing)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from nnseg._hashing import canonical_json, to_jsonable

__all__ = ["FrozenMap", "canonical_json", "freeze", "to_jsonable"]


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
