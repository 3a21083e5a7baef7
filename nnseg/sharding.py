"""Deterministic splitting of work into parts (``Shard``).

One rule splits every sharded stage (fingerprint, preprocessing, prediction): sort the case ids, then
take every ``count``-th id starting at ``index``. This is exactly the assignment nnU-Net makes for
``-num_parts count -part_id index``, so an nnseg part and an nnU-Net part own the same cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nnseg._checks import parse_int

__all__ = ["Shard"]


@dataclass(frozen=True, slots=True)
class Shard:
    """One part of a job split into ``count`` parts.

    Args:
        index: Which part this is, ``0 <= index < count`` (nnU-Net's ``-part_id``).
        count: How many parts the work is split into, ``count >= 1`` (nnU-Net's ``-num_parts``).

    Raises:
        ConfigError: If ``count`` is not a positive int or ``index`` is outside ``[0, count)``.

    Example:
        >>> Shard(1, 3).select(["c", "a", "d", "b"])
        ['b']
    """

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        # Shard(0, 1) processes everything; nnU-Net also accepts part_id == num_parts, an empty part: nnseg does not.
        count = parse_int("Shard", "count", self.count, minimum=1)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "index", parse_int("Shard", "index", self.index, minimum=0, maximum=count - 1))

    @classmethod
    def whole(cls) -> Shard:
        """Return the shard that owns all the work (``Shard(0, 1)``)."""
        return cls(0, 1)

    @property
    def is_whole(self) -> bool:
        """Whether this shard owns all the work."""
        return self.count == 1

    def select(self, case_ids: Iterable[str]) -> list[str]:
        """Return the case ids this part owns, in sorted order.

        The ids are sorted first, so the result does not depend on the input order.

        Args:
            case_ids: All case ids of the job. Duplicates are dropped.

        Returns:
            ``sorted(set(case_ids))[index::count]``.
        """
        return sorted(set(case_ids))[self.index :: self.count]

    def __str__(self) -> str:
        return f"part {self.index} of {self.count}"
