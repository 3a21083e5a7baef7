"""Run every stage benchmark and write one Markdown report: speed, peak memory, ratio to nnU-Net v2, floor, machine.

Usage::

    python benchmarks/run_all.py                 # every benchmarks/bench_*.py at full size (long)
    python benchmarks/run_all.py --quick         # each with its --quick flag (and 1 worker, 1 repeat)
    python benchmarks/run_all.py --report-only   # rebuild the report from the JSON already in results/
    python benchmarks/run_all.py --only preprocess planning --no-nnunet
    python benchmarks/run_all.py --note "idle machine, nothing else running"

Each ``bench_<stage>.py`` runs as its own process with ``--output <results-dir>/<stage>.json`` (plus
``--quick`` when asked for and the script has that flag). The report goes to ``benchmarks/REPORT.md`` and
``docs/benchmarks.md``. Full-size results live in ``benchmarks/results/``; ``--quick`` results go to
``benchmarks/results/quick/`` and their report to ``benchmarks/results/quick/REPORT.md`` so that a smoke
run never replaces the published figures. nnU-Net v2 columns appear when nnunetv2 is installed.

The report opens with the goals of issue 18 (each with its measured ratio, verdict and the machine's load while
its benchmark ran). The load (1/5/15-minute averages and the other processes busy on the machine) is recorded
before, during and after each benchmark into ``<results-dir>/runs.json``; a start on a machine whose 1-minute
load is above 0.5 prints a warning, since every ratio then carries the other jobs' noise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
REPORTS = (HERE / "REPORT.md", REPO / "docs" / "benchmarks.md")
SNAPSHOT_SECONDS = 0.5  # how long a before/after snapshot watches the other processes
MONITOR_PERIOD = 5.0  # seconds between load samples while a benchmark runs

if str(HERE) not in sys.path:  # the sibling helper modules, also when this file is loaded by path (tests)
    sys.path.insert(0, str(HERE))
from _bench_common import LoadMonitor, load_snapshot  # noqa: E402
from _goals import check_goals  # noqa: E402
from _runs import idle_warning, load_row, load_summary, read_runs, write_runs  # noqa: E402
from _summaries import SUMMARY_COLUMNS, fmt, summarize  # noqa: E402


# ------------------------------------------------------------------------------------------------ machine
def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and library versions of this machine."""
    cpu = ram = ""
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = models[0] if models else ""
    if meminfo.is_file():
        total = [ln.split()[1] for ln in meminfo.read_text().splitlines() if ln.startswith("MemTotal:")]
        ram = f"{int(total[0]) / 2**20:.1f} GiB" if total else ""
    info = {"CPU": cpu or platform.processor() or platform.machine(), "cores": str(os.cpu_count()), "RAM": ram,
            "OS": platform.platform(), "Python": platform.python_version()}  # fmt: skip
    for package in ("torch", "numpy", "blosc2", "SimpleITK", "nnunetv2"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    return info


# ------------------------------------------------------------------------------------------------ running
def discover(only: Iterable[str] | None = None) -> list[Path]:
    """``benchmarks/bench_*.py``, sorted; ``only`` keeps the named stages (``preprocess`` or ``bench_preprocess``)."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
        scripts = [s for s in scripts if stage_name(s) in wanted]
    return scripts


def stage_name(script: Path) -> str:
    """``bench_preprocess.py`` -> ``preprocess``."""
    return script.stem.removeprefix("bench_")


def script_flags(script: Path) -> str:
    """The ``--help`` text of a benchmark script (to see which flags it has)."""
    result = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                            check=False, cwd=REPO)  # fmt: skip
    return result.stdout


def command_for(script: Path, output: Path, *, quick: bool, no_nnunet: bool, flags: str) -> list[str]:
    """The command line that runs one benchmark into ``output``."""
    command = [sys.executable, str(script), "--output", str(output)]
    if quick and "--quick" in flags:
        command.append("--quick")
    if quick and "--workers" in flags:
        command += ["--workers", "1"]
    if quick and "--repeats" in flags:
        command += ["--repeats", "1"]
    for flag in ("--no-nnunet", "--skip-nnunet"):
        if no_nnunet and flag in flags:
            command.append(flag)
    return command


def run_one(script: Path, results_dir: Path, *, quick: bool, no_nnunet: bool, timeout: float) -> dict[str, Any]:
    """Run one benchmark; return ``{"stage", "command", "seconds", "ok", "error", "load"}``.

    ``load`` holds :func:`load_snapshot` ``before`` and ``after`` the run and the :class:`LoadMonitor` summary
    ``during`` it (the benchmark's own processes are not counted as other busy processes).
    """
    output = results_dir / f"{stage_name(script)}.json"
    flags = script_flags(script)
    if "--output" not in flags:
        return {"stage": stage_name(script), "command": "", "seconds": 0.0, "ok": False,
                "error": "the script has no --output option; it cannot be collected"}  # fmt: skip
    command = command_for(script, output, quick=quick, no_nnunet=no_nnunet, flags=flags)
    shown = " ".join(["python", *(_relative(part) for part in command[1:])])
    sys.stdout.write(f"==> {shown}\n")
    sys.stdout.flush()
    before = load_snapshot(SNAPSHOT_SECONDS)
    start = time.perf_counter()
    with LoadMonitor(MONITOR_PERIOD) as monitor:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            error = ""
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            error = f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    load = {"before": before, "during": monitor.summary(), "after": load_snapshot(SNAPSHOT_SECONDS)}
    sys.stdout.write(stdout)
    ok = not error and process.returncode == 0 and output.is_file()
    if not ok and not error:
        error = (stderr.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
    return {"stage": stage_name(script), "command": shown, "seconds": round(seconds, 1), "ok": ok, "error": error,
            "load": load}  # fmt: skip


def _relative(part: str) -> str:
    """A path inside the repository as a relative path (for the report); anything else unchanged."""
    path = Path(part)
    return str(path.relative_to(REPO)) if path.is_absolute() and path.is_relative_to(REPO) else part


# ------------------------------------------------------------------------------------------------ Markdown
def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (pipes in cells escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


PROFILE_KEYS = ("stages", "profile", "profiles", "stage_cpu_ms_per_sample")  # where-the-time-goes tables


def details(data: Any) -> list[str]:
    """Every table of a benchmark's JSON: lists of objects as tables, objects of scalars as key/value tables.

    Profiles (``stages``, ``profile``, ...) come first; an object of objects (e.g. a profile per tool) is one
    table with a row per outer key.
    """
    lines: list[str] = []
    if not isinstance(data, dict):
        return [f"`{fmt(data)}`", ""]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or _is_scalar_list(v)}
    if scalars:
        lines += markdown_table(["key", "value"], [[k, fmt(v)] for k, v in scalars.items()]) + [""]
    ordered = sorted((k for k in data if k not in scalars), key=lambda k: k not in PROFILE_KEYS)
    for key in ordered:
        value = data[key]
        lines += [f"*{key}*" + (" (where the time goes)" if key in PROFILE_KEYS else ""), ""]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            header = list(dict.fromkeys(k for row in value for k in row))
            lines += markdown_table(header, [[fmt(row.get(k)) for k in header] for row in value]) + [""]
        elif isinstance(value, dict) and all(_is_scalar(v) for v in value.values()):
            lines += markdown_table(["key", "value"], [[k, fmt(v)] for k, v in value.items()]) + [""]
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, dict) and all(_is_scalar(x) for x in v.values()) for v in value.values())
        ):
            header = list(dict.fromkeys(k for row in value.values() for k in row))
            lines += markdown_table(["", *header], [[name, *(fmt(row.get(k)) for k in header)]
                                                    for name, row in value.items()]) + [""]  # fmt: skip
        else:
            lines += ["```json", json.dumps(value, indent=1)[:4000], "```", ""]
    return lines


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) or _is_scalar_list(value)


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in value)


def goals_section(results: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """The "Goals of issue 18" section: one row per goal with its measured value, verdict and load."""
    goals = check_goals(results)
    counts = {status: sum(g.status == status for g in goals) for status in ("met", "not met", "not measured")}
    rows = [[g.goal, g.measured, g.status, load_summary(g.stage, runs, results.get(g.stage))] for g in goals]
    return ["## Goals of issue 18", "",
            f"{counts['met']} of {len(goals)} goals met, {counts['not met']} not met, {counts['not measured']} not "
            "measured. Speed ratios are nnU-Net v2 time / nnseg time in the same run (higher is better); memory "
            "and CPU-time ratios are nnseg / nnU-Net (lower is better). Load is the 1-minute load average.", "",
            *markdown_table(["goal", "measured", "status", "load during the benchmark"], rows), ""]  # fmt: skip


def build_report(results: dict[str, dict[str, Any]], runs: list[dict[str, Any]], info: dict[str, str],
                 *, quick: bool, note: str | None = None) -> str:  # fmt: skip
    """The whole report as Markdown."""
    summary = [row for stage, data in results.items() for row in summarize(stage, data)]
    lines = [
        "# Benchmark report" + (" (quick mode: small sizes, not for quoting)" if quick else ""),
        "",
        "<!-- Written by `python benchmarks/run_all.py`; do not edit by hand. -->",
        "",
        *([f"**Note:** {note}", ""] if note else []),
        f"Generated {datetime.date.today().isoformat()} from the JSON files of `benchmarks/bench_*.py`. Speeds are",
        'wall-clock, peak memory is the resident set size of the process and its workers; "vs nnU-Net v2" compares',
        "with nnunetv2 run on the same data on the same machine (absent when nnunetv2 is not installed); the floor",
        "is the IO-only time where a benchmark measures one. On a machine shared with other jobs the absolute",
        "figures are noisy; the ratios, measured back to back, are more stable. The machine below is the one",
        "that wrote this report; each benchmark's JSON records where it ran (see the details).",
        "",
        *goals_section(results, runs),
        "## Machine",
        "",
        *markdown_table(["", ""], [[k, v] for k, v in info.items()]),
        "",
    ]
    if any(isinstance(r.get("load"), dict) for r in runs):
        lines += ["Load while each benchmark ran (1-minute load average; other busy processes: those outside the",
                  "benchmark using at least 20 % of a core, counted before / at most during / after):", "",
                  *markdown_table(["stage", "started (UTC)", "load before", "during (mean / max)", "after",
                                   "other busy processes", "busy others"],
                                  [load_row(r) for r in runs if isinstance(r.get("load"), dict)]), ""]  # fmt: skip
    lines += [
        "## Summary",
        "",
        *markdown_table(list(SUMMARY_COLUMNS), [[r[c] for c in SUMMARY_COLUMNS] for r in summary]),
        "",
    ]
    if runs:
        lines += ["## Runs", ""]
        lines += markdown_table(["stage", "command", "seconds", "result"],
                                [[str(r.get("stage")), f"`{r['command']}`" if r.get("command") else "-", fmt(r.get("seconds")),
                                  "ok" if r.get("ok") else f"failed: {r.get('error')}"] for r in runs])  # fmt: skip
        lines.append("")
    lines += ["## Details", ""]
    for stage, data in results.items():
        lines += [f"### {stage}", "", *details(data)]
    return "\n".join(lines).rstrip() + "\n"


def load_results(results_dir: Path, stages: list[str]) -> dict[str, dict[str, Any]]:
    """The JSON of each stage found in ``results_dir`` (stages without a file are left out)."""
    results = {}
    for stage in stages:
        path = results_dir / f"{stage}.json"
        if path.is_file():
            results[stage] = json.loads(path.read_text())
    return results


HAND_WRITTEN_MARKER = "<!-- The sections below are hand-written"


def hand_written_part(report: Path) -> str:
    """The hand-written sections of an existing report (from :data:`HAND_WRITTEN_MARKER` on), kept on rewrite."""
    if not report.is_file():
        return ""
    old = report.read_text()
    start = old.find(HAND_WRITTEN_MARKER)
    return "" if start < 0 else "\n" + old[start:]


def run_all(scripts: list[Path], results_dir: Path, args: argparse.Namespace, note: str | None) -> list[dict[str, Any]]:
    """Run ``scripts`` one after the other (warning first when the machine is busy), recording each in runs.json."""
    warning = idle_warning(load_snapshot(SNAPSHOT_SECONDS))
    if warning:
        sys.stderr.write(warning)
    runs = []
    for script in scripts:
        runs.append(run_one(script, results_dir, quick=args.quick, no_nnunet=args.no_nnunet, timeout=args.timeout))
        write_runs(results_dir, runs, note)  # after each benchmark: a crash later keeps what was measured
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks (or only rebuild the report) and write the report files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: --quick, 1 worker, 1 repeat where supported")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="STAGE",
        help="run these benchmarks only (e.g. preprocess planning); the report still shows every stage's JSON",
    )
    parser.add_argument("--no-nnunet", action="store_true", help="pass --no-nnunet / --skip-nnunet where accepted")
    parser.add_argument("--report-only", action="store_true", help="do not run anything; report the existing JSON")
    parser.add_argument("--results-dir", type=Path, help="JSON folder (default results/, with --quick results/quick/)")
    parser.add_argument("--report", type=Path, nargs="+", help="report files (default REPORT.md and docs/benchmarks.md; "
                        "with --quick results/quick/REPORT.md)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per benchmark")
    parser.add_argument("--note", help="a free-text line for the report's header (e.g. the machine's state); kept in "
                        "runs.json for later --report-only rebuilds")  # fmt: skip
    args = parser.parse_args(argv)
    results_dir = args.results_dir or (RESULTS / "quick" if args.quick else RESULTS)
    reports = args.report or ([results_dir / "REPORT.md"] if args.quick else list(REPORTS))
    scripts = discover(args.only)
    if not scripts:
        sys.stderr.write(f"run_all.py: error: no benchmark matches {args.only}; available: "
                         f"{', '.join(stage_name(s) for s in discover())}\n")  # fmt: skip
        return 2
    results_dir.mkdir(parents=True, exist_ok=True)
    note = args.note if args.note is not None else read_runs(results_dir)["note"]
    runs = [] if args.report_only else run_all(scripts, results_dir, args, note)
    stages = [stage_name(s) for s in discover()]  # the report covers every stage measured, not only those rerun
    results = load_results(results_dir, stages)
    recorded = [r for r in read_runs(results_dir)["runs"] if r.get("stage") in stages]
    text = build_report(results, recorded, machine(), quick=args.quick, note=note)
    for report in reports:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text + hand_written_part(report))
        sys.stdout.write(f"wrote {report}\n")
    failed = [r["stage"] for r in runs if not r["ok"]]
    if failed:
        sys.stderr.write(f"run_all.py: {len(failed)} benchmark(s) failed: {', '.join(failed)}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
