"""One "did you mean" helper for every lookup by name (configurations, registries, presets, options).

Example:
    >>> unknown_name_hint("3d_fulres", ["2d", "3d_fullres", "3d_lowres"])
    "Did you mean '3d_fullres'? Available: '2d', '3d_fullres', '3d_lowres'."
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["close_matches", "format_names", "unknown_name_hint"]


def close_matches(name: str, choices: Iterable[str], *, max_matches: int = 1, cutoff: float = 0.6) -> list[str]:
    """Return up to ``max_matches`` choices that look like ``name``, best first.

    Matching ignores case, so ``"3D_FULLRES"`` finds ``"3d_fullres"``.

    Args:
        name: The name the caller asked for.
        choices: The names that exist.
        max_matches: How many suggestions to return at most.
        cutoff: Similarity threshold in [0, 1] (``difflib`` ratio); higher is stricter.

    Returns:
        The matching choices with their original spelling; empty when nothing is close.
    """
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    found = difflib.get_close_matches(str(name).lower(), list(by_lower), n=max_matches, cutoff=cutoff)
    return [by_lower[key] for key in found]


def format_names(names: Iterable[str]) -> str:
    """Return ``'a', 'b', 'c'`` (sorted, quoted), or ``(none)`` when there are no names."""
    listed = sorted(str(n) for n in names)
    return ", ".join(repr(n) for n in listed) if listed else "(none)"


def unknown_name_hint(name: str, choices: Iterable[str]) -> str:
    """Return the tail of an "unknown name" message: a suggestion (if any) and the available names.

    Args:
        name: The name that was not found.
        choices: The names that exist.

    Returns:
        ``"Did you mean 'x'? Available: 'x', 'y'."`` or ``"Available: 'x', 'y'."``.
    """
    choices = list(choices)
    matches = close_matches(name, choices)
    suggestion = f"Did you mean {matches[0]!r}? " if matches else ""
    return f"{suggestion}Available: {format_names(choices)}."
