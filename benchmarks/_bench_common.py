"""Measurements the benchmark scripts share (imported by them as a sibling module)."""

from __future__ import annotations

__all__ = ["tree_rss"]


def tree_rss(root: int) -> int:
    """Resident memory in bytes of process ``root`` and all its descendants (Linux ``/proc``; 0 elsewhere)."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/status") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                stack.extend(int(child) for child in handle.read().split())
        except (OSError, StopIteration):
            continue
    return total
