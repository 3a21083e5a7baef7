"""Deterministic splitting of work into parts (``Shard``).

One rule splits every sharded stage (fingerprint, preprocessing, prediction): sort the case ids, then
take every ``count``-th id starting at ``index``. This is exactly the assignment nnU-Net makes for
``-num_parts count -part_id index``, so an nnseg part and an nnU-Net part own the same cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nnseg.errors import ConfigError

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
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(
                    f"Shard.{name} must be an int; got {value!r} of type {type(value).__name__}."
                )
        if self.count < 1:
            raise ConfigError(
                f"Shard.count must be at least 1 (the number of parts); got {self.count}. "
                "Use Shard(0, 1) to process everything in one part."
            )
        if not 0 <= self.index < self.count:
            raise ConfigError(
                f"Shard.index must satisfy 0 <= index < count ({self.count}); got {self.index}. "
                f"Parts are numbered 0 to {self.count - 1} (nnU-Net accepts part_id == num_parts; "
                "nnseg does not, because that part would own no cases)."
            )

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
