"""Measurements the benchmark scripts share (imported by them as a sibling module)."""

from __future__ import annotations

__all__ = ["run_measured", "tree_rss"]


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


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``command``; return (wall seconds, peak RSS bytes of its process tree, its stdout).

    Output goes to temporary files, so a chatty command never blocks on a full pipe while it is polled.

    Raises:
        RuntimeError: If the command fails (with the end of its stderr).
    """
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        peak = 0
        while process.poll() is None:
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed with exit code {process.returncode}:\n{stderr[-3000:]}")
    return seconds, peak, stdout
