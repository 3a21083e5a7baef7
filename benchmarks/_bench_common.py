"""Measurements the benchmark scripts share (imported by them as a sibling module)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

__all__ = ["LoadMonitor", "busy_processes", "command_line", "cpu_times", "load_snapshot", "run_measured", "tree_rss"]

BUSY_SHARE = 0.2  # a process using at least this share of one core over an interval counts as busy


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


# ------------------------------------------------------------------------------------------------ machine load
def cpu_times() -> dict[int, tuple[str, float]]:
    """``{pid: (name, CPU seconds so far)}`` of every process (Linux ``/proc``; empty elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[int, tuple[str, float]] = {}
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                text = handle.read()
        except OSError:
            continue  # the process ended meanwhile
        name, _, rest = text.partition(" (")[2].rpartition(")")
        fields = rest.split()  # fields[0] is the state; utime and stime are the 14th and 15th fields of the line
        if len(fields) > 12:
            out[pid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def descendants(root: int) -> set[int]:
    """``root`` and every process below it (Linux ``/proc``; just ``{root}`` elsewhere)."""
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        found.add(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as handle:
                stack.extend(int(child) for child in handle.read().split())
        except OSError:
            continue
    return found


def busy_processes(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float,
    exclude: set[int] | frozenset[int] = frozenset(),
    share: float = BUSY_SHARE,
) -> list[tuple[int, str, float]]:  # fmt: skip
    """``(pid, name, cores used)`` of the processes busy between two :func:`cpu_times` snapshots, busiest first.

    A process counts when it used at least ``share`` of one core over the ``seconds`` between the snapshots;
    processes in ``exclude`` (the benchmark runner and its children) and processes that started in between
    with no earlier reading are left out.
    """
    if seconds <= 0:
        return []
    busy = []
    for pid, (name, cpu) in after.items():
        if pid in exclude or pid not in before or before[pid][0] != name:
            continue
        used = (cpu - before[pid][1]) / seconds
        if used >= share:
            busy.append((pid, name, round(used, 2)))
    return sorted(busy, key=lambda item: -item[2])


def command_line(pid: int, name: str = "?", limit: int = 60) -> str:
    """A short command line of process ``pid`` (program name without its folder, then the arguments).

    Falls back to ``name`` when the process is gone or has no command line (kernel threads).
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            parts = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return name
    parts = [part for part in parts if part]
    if not parts:
        return name
    text = " ".join([os.path.basename(parts[0]), *parts[1:]])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def load_snapshot(interval: float = 0.5) -> dict[str, Any]:
    """The machine's load now: load averages, and the other processes busy over ``interval`` seconds.

    Returns:
        ``{"time": ISO time (UTC), "load_average": [1, 5, 15 min], "other_busy": count,
        "busy": [{"command": short command line, "cpu": cores used}, ...]}`` (``busy``: the five busiest); this
        process and its children are not counted.
    """
    first, start = cpu_times(), time.perf_counter()
    time.sleep(interval)
    busy = busy_processes(first, cpu_times(), time.perf_counter() - start, descendants(os.getpid()))
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": _load_average(),
            "other_busy": len(busy),
            "busy": [{"command": command_line(pid, name), "cpu": used} for pid, name, used in busy[:5]]}  # fmt: skip


class LoadMonitor:
    """Samples the load every ``period`` seconds in a thread while a benchmark runs (use as a context manager).

    Each sample records the 1-minute load average and how many processes outside this one's tree were busy
    since the previous sample; :meth:`summary` gives their mean and maximum.
    """

    def __init__(self, period: float = 5.0) -> None:
        self.period = period
        self.samples: list[tuple[float, int, list[str]]] = []  # (1-minute load, other busy, their commands)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        previous, start = cpu_times(), time.perf_counter()
        while True:
            stopped = self._stop.wait(self.period)
            now, seconds = cpu_times(), time.perf_counter() - start
            if seconds >= min(self.period, 1.0) or not self.samples:
                busy = busy_processes(previous, now, seconds, descendants(os.getpid()))
                load = _load_average()
                commands = [command_line(pid, name) for pid, name, _ in busy]
                self.samples.append((load[0] if load else 0.0, len(busy), commands))
                previous, start = now, time.perf_counter()
            if stopped:
                return

    def summary(self) -> dict[str, Any]:
        """``{"samples", "load1_mean", "load1_max", "other_busy_mean", "other_busy_max", "busy"}``.

        ``busy``: the five commands seen busy in the most samples, as ``{"command", "samples"}``.
        """
        if not self.samples:
            return {"samples": 0}
        loads, counts = [s[0] for s in self.samples], [s[1] for s in self.samples]
        seen: dict[str, int] = {}
        for _, _, commands in self.samples:
            for command in set(commands):
                seen[command] = seen.get(command, 0) + 1
        top = sorted(seen.items(), key=lambda item: -item[1])[:5]
        return {"samples": len(self.samples), "load1_mean": round(sum(loads) / len(loads), 2),
                "load1_max": max(loads), "other_busy_mean": round(sum(counts) / len(counts), 2),
                "other_busy_max": max(counts), "busy": [{"command": c, "samples": n} for c, n in top]}  # fmt: skip
