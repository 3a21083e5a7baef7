"""Run every stage benchmark and write one Markdown report: speed, peak memory, ratio to nnU-Net v2, floor, machine.

Usage::

    python benchmarks/run_all.py                 # every benchmarks/bench_*.py at full size (long)
    python benchmarks/run_all.py --quick         # each with its --quick flag (and 1 worker, 1 repeat)
    python benchmarks/run_all.py --report-only   # rebuild the report from the JSON already in results/
    python benchmarks/run_all.py --only preprocess planning --no-nnunet

Each ``bench_<stage>.py`` runs as its own process with ``--output <results-dir>/<stage>.json`` (plus
``--quick`` when asked for and the script has that flag). The report goes to ``benchmarks/REPORT.md`` and
``docs/benchmarks.md``. Full-size results live in ``benchmarks/results/``; ``--quick`` results go to
``benchmarks/results/quick/`` and their report to ``benchmarks/results/quick/REPORT.md`` so that a smoke
run never replaces the published figures. nnU-Net v2 columns appear when nnunetv2 is installed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
REPORTS = (HERE / "REPORT.md", REPO / "docs" / "benchmarks.md")

Row = dict[str, str]
SUMMARY_COLUMNS = ("stage", "variant", "nnseg speed", "nnseg peak memory", "vs nnU-Net v2", "floor", "note")


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
    """Run one benchmark; return ``{"stage", "command", "seconds", "ok", "error"}``."""
    output = results_dir / f"{stage_name(script)}.json"
    flags = script_flags(script)
    if "--output" not in flags:
        return {"stage": stage_name(script), "command": "", "seconds": 0.0, "ok": False,
                "error": "the script has no --output option; it cannot be collected"}  # fmt: skip
    command = command_for(script, output, quick=quick, no_nnunet=no_nnunet, flags=flags)
    shown = " ".join(["python", *(_relative(part) for part in command[1:])])
    sys.stdout.write(f"==> {shown}\n")
    sys.stdout.flush()
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=REPO, timeout=timeout, check=False, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"stage": stage_name(script), "command": shown, "seconds": timeout, "ok": False,
                "error": f"timed out after {timeout:.0f} s"}  # fmt: skip
    seconds = time.perf_counter() - start
    sys.stdout.write(result.stdout)
    ok = result.returncode == 0 and output.is_file()
    error = "" if ok else (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
    return {"stage": stage_name(script), "command": shown, "seconds": round(seconds, 1), "ok": ok, "error": error}


def _relative(part: str) -> str:
    """A path inside the repository as a relative path (for the report); anything else unchanged."""
    path = Path(part)
    return str(path.relative_to(REPO)) if path.is_absolute() and path.is_relative_to(REPO) else part


# ------------------------------------------------------------------------------------------------ summaries
def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else json.dumps(value)
    return str(value)


def _ratio(ours: float | None, theirs: float | None, *, higher_is_better: bool) -> str:
    if not ours or not theirs:
        return "-"
    factor = ours / theirs if higher_is_better else theirs / ours
    return f"{factor:.2f}x {'faster' if factor >= 1 else 'slower'}"


def _row(
    stage: str, variant: str, speed: str, memory: str = "-", ratio: str = "-", floor: str = "-", note: str = ""
) -> Row:
    return dict(zip(SUMMARY_COLUMNS, (stage, variant, speed, memory, ratio, floor, note), strict=True))


def summarize_fingerprint(data: dict[str, Any]) -> list[Row]:
    """bench_fingerprint.py: rows ``variant / workers / seconds / peak_rss_mb``."""
    rows, cases = data.get("rows", []), data.get("cases") or 0
    out = []
    for workers in sorted({r["workers"] for r in rows}):
        by = {r["variant"]: r for r in rows if r["workers"] == workers}
        ours, theirs = by.get("nnseg"), by.get("nnunetv2")
        if ours is None:
            continue
        same = data.get("equal", {}).get("nnunetv2")
        out.append(_row("fingerprint", f"{workers} worker(s), {cases} cases", f"{cases / ours['seconds']:.2f} cases/s",
                        f"{ours['peak_rss_mb']} MB RSS",
                        _ratio(ours["seconds"], theirs and theirs["seconds"], higher_is_better=False),
                        note="" if same is None else f"same fingerprint as nnU-Net: {_fmt(same)}"))  # fmt: skip
    return out


def summarize_preprocess(data: dict[str, Any]) -> list[Row]:
    """bench_preprocess.py: ``throughput`` rows per tool (nnseg, nnunetv2, io-floor) and worker count."""
    rows = data.get("throughput", [])
    out = []
    for workers in sorted({r["workers"] for r in rows}):
        by = {r["tool"]: r for r in rows if r["workers"] == workers}
        ours, theirs, floor = by.get("nnseg"), by.get("nnunetv2"), by.get("io-floor")
        if ours is None:
            continue
        out.append(_row("preprocess", f"{workers} worker(s), {ours['cases']} cases", f"{ours['cases_per_s']:.2f} cases/s",
                        f"{ours['peak_rss_mb']:.0f} MB RSS",
                        _ratio(ours["cases_per_s"], theirs and theirs["cases_per_s"], higher_is_better=True),
                        f"{floor['cases_per_s']:.2f} cases/s (IO only)" if floor else "-"))  # fmt: skip
    for fmt in data.get("formats", [])[:1]:
        out.append(_row("preprocess", f"store format: {fmt.get('format', '?')}", f"{_fmt(fmt.get('patch_ms_cold'))} ms per patch (cold)",
                        note=f"compression ratio {_fmt(fmt.get('ratio'))}"))  # fmt: skip
    return out


def summarize_planning(data: dict[str, Any]) -> list[Row]:
    """bench_planning.py: seconds per plan for each fingerprint and planner."""
    rows = data.get("rows", [])
    if not rows:
        return []
    ours = statistics.median(r["nnseg_s"] for r in rows)
    theirs_all = [r["nnunet_s"] for r in rows if r.get("nnunet_s")]
    ratios = [r["nnunet_s"] / r["nnseg_s"] for r in rows if r.get("nnunet_s") and r.get("nnseg_s")]
    same = [r.get("same_plans") for r in rows if r.get("same_plans") is not None]
    return [_row("planning", f"{len(rows)} fingerprint x planner pairs", f"{1000 * ours:.1f} ms per plan (median)",
                 ratio=f"{statistics.median(ratios):.0f}x faster (median)" if ratios else "-",
                 note=(f"same plans as nnU-Net in {sum(bool(s) for s in same)} of {len(same)}" if same else "")
                 + (f"; nnU-Net median {statistics.median(theirs_all):.2f} s" if theirs_all else ""))]  # fmt: skip


def summarize_dataloader(data: dict[str, Any]) -> list[Row]:
    """bench_dataloader.py: batches per second by worker count."""
    settings = data.get("settings", {})
    patch = _fmt(settings.get("patch_size")) if settings.get("patch_size") else "?"
    out = []
    for r in data.get("throughput", []):
        ours, theirs = r.get("nnseg_batches_per_s"), r.get("nnunetv2_batches_per_s")
        out.append(_row("training data", f"{r.get('workers')} worker(s), patch {patch}, batch {settings.get('batch_size', '?')}",
                        f"{ours:.2f} batches/s" if ours else "-",
                        ratio=_ratio(ours, theirs, higher_is_better=True)))  # fmt: skip
    return out


def summarize_training(data: dict[str, Any]) -> list[Row]:
    """bench_training.py: ``timing`` (seconds per step by trainer) and ``budget`` (Dice after N steps)."""
    timing, budget = data.get("timing", {}), data.get("budget", {})
    plan = data.get("plan", {})
    ours = next((k for k in timing if k.startswith("nnseg")), None)
    if ours is None:
        return []
    theirs = next((k for k in timing if k.startswith("nnunet")), None)
    dice = ", ".join(f"{k} {_fmt(v.get('dice'))}" for k, v in budget.items() if isinstance(v, dict))
    seeds = f" (mean of {data['seeds']} seeds)" if data.get("seeds", 1) > 1 else ""
    return [_row("training", f"patch {_fmt(plan.get('patch_size'))}, batch {plan.get('batch_size', '?')}",
                 f"{timing[ours]:.3f} s per step",
                 ratio=_ratio(timing[ours], timing.get(theirs) if theirs else None, higher_is_better=False),
                 note=f"Dice after {data.get('budget_steps', '?')} steps{seeds}: {dice}" if dice else "")]  # fmt: skip


def summarize_predict(data: dict[str, Any]) -> list[Row]:
    """bench_predict.py: ``rows`` of seconds per case and peak RSS per tool, with and without mirror TTA."""
    rows = data.get("rows", [])
    out = []
    for row in rows:
        if row.get("tool", "").startswith("nnunet"):
            continue
        reference = next((r for r in rows if r.get("tool") == "nnunet" and r.get("tta") == row.get("tta")), None)
        agreement = row.get("agreement_with_nnunet")
        out.append(_row("prediction", f"{row['tool']}, TTA {'on' if row.get('tta') else 'off'}, {data.get('cases', '?')} cases",
                        f"{row['seconds_per_case']:.2f} s per case", f"{row['peak_rss_mb']:.0f} MB RSS",
                        _ratio(row["seconds_per_case"], reference and reference["seconds_per_case"], higher_is_better=False),
                        note="" if agreement is None else f"voxel agreement with nnU-Net {agreement:.6f}"))  # fmt: skip
    return out


SUMMARIZERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "fingerprint": summarize_fingerprint,
    "preprocess": summarize_preprocess,
    "planning": summarize_planning,
    "dataloader": summarize_dataloader,
    "training": summarize_training,
    "predict": summarize_predict,
}


def summarize(stage: str, data: dict[str, Any]) -> list[Row]:
    """Summary rows of one benchmark's JSON (a generic row for a benchmark this script does not know yet)."""
    summarizer = SUMMARIZERS.get(stage)
    if summarizer is not None:
        try:
            rows = summarizer(data)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
            return [
                _row(
                    stage, "-", "-", note=f"could not summarise the JSON ({type(err).__name__}: {err}); see the details"
                )
            ]
        if rows:
            return rows
    return [_row(stage, "-", "see the details below", note="no summary for this benchmark's JSON layout")]


# ------------------------------------------------------------------------------------------------ Markdown
def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (pipes in cells escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


def details(data: Any) -> list[str]:
    """Every table of a benchmark's JSON: lists of objects as tables, objects of scalars as key/value tables."""
    lines: list[str] = []
    if not isinstance(data, dict):
        return [f"`{_fmt(data)}`", ""]
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or _is_scalar_list(v)}
    if scalars:
        lines += markdown_table(["key", "value"], [[k, _fmt(v)] for k, v in scalars.items()]) + [""]
    for key, value in data.items():
        if key in scalars:
            continue
        lines += [f"*{key}*", ""]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            header = list(dict.fromkeys(k for row in value for k in row))
            lines += markdown_table(header, [[_fmt(row.get(k)) for k in header] for row in value]) + [""]
        elif isinstance(value, dict) and all(
            not isinstance(v, dict | list) or _is_scalar_list(v) for v in value.values()
        ):
            lines += markdown_table(["key", "value"], [[k, _fmt(v)] for k, v in value.items()]) + [""]
        else:
            lines += ["```json", json.dumps(value, indent=1)[:4000], "```", ""]
    return lines


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict | list) for v in value)


def build_report(results: dict[str, dict[str, Any]], runs: list[dict[str, Any]], info: dict[str, str],
                 *, quick: bool) -> str:  # fmt: skip
    """The whole report as Markdown."""
    summary = [row for stage, data in results.items() for row in summarize(stage, data)]
    lines = [
        "# Benchmark report" + (" (quick mode: small sizes, not for quoting)" if quick else ""),
        "",
        "<!-- Written by `python benchmarks/run_all.py`; do not edit by hand. -->",
        "",
        f"Generated {datetime.date.today().isoformat()} from the JSON files of `benchmarks/bench_*.py`. Speeds are",
        'wall-clock, peak memory is the resident set size of the process and its workers; "vs nnU-Net v2" compares',
        "with nnunetv2 run on the same data on the same machine (absent when nnunetv2 is not installed); the floor",
        "is the IO-only time where a benchmark measures one. On a machine shared with other jobs the absolute",
        "figures are noisy; the ratios, measured back to back, are more stable. The machine below is the one",
        "that wrote this report; each benchmark's JSON records where it ran (see the details).",
        "",
        "## Machine",
        "",
        *markdown_table(["", ""], [[k, v] for k, v in info.items()]),
        "",
        "## Summary",
        "",
        *markdown_table(list(SUMMARY_COLUMNS), [[r[c] for c in SUMMARY_COLUMNS] for r in summary]),
        "",
    ]
    if runs:
        lines += ["## Runs", ""]
        lines += markdown_table(["stage", "command", "seconds", "result"],
                                [[r["stage"], f"`{r['command']}`" if r["command"] else "-", _fmt(r["seconds"]),
                                  "ok" if r["ok"] else f"failed: {r['error']}"] for r in runs])  # fmt: skip
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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks (or only rebuild the report) and write the report files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes: --quick, 1 worker, 1 repeat where supported")
    parser.add_argument(
        "--only", nargs="+", metavar="STAGE", help="run these benchmarks only (e.g. preprocess planning)"
    )
    parser.add_argument("--no-nnunet", action="store_true", help="pass --no-nnunet / --skip-nnunet where accepted")
    parser.add_argument("--report-only", action="store_true", help="do not run anything; report the existing JSON")
    parser.add_argument("--results-dir", type=Path, help="JSON folder (default results/, with --quick results/quick/)")
    parser.add_argument("--report", type=Path, nargs="+", help="report files (default REPORT.md and docs/benchmarks.md; "
                        "with --quick results/quick/REPORT.md)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per benchmark")
    args = parser.parse_args(argv)
    results_dir = args.results_dir or (RESULTS / "quick" if args.quick else RESULTS)
    reports = args.report or ([results_dir / "REPORT.md"] if args.quick else list(REPORTS))
    scripts = discover(args.only)
    if not scripts:
        sys.stderr.write(f"run_all.py: error: no benchmark matches {args.only}; available: "
                         f"{', '.join(stage_name(s) for s in discover())}\n")  # fmt: skip
        return 2
    results_dir.mkdir(parents=True, exist_ok=True)
    runs = [] if args.report_only else [
        run_one(s, results_dir, quick=args.quick, no_nnunet=args.no_nnunet, timeout=args.timeout) for s in scripts
    ]  # fmt: skip
    results = load_results(results_dir, [stage_name(s) for s in scripts])
    text = build_report(results, runs, machine(), quick=args.quick)
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
