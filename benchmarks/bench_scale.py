"""Benchmark how fingerprint and preprocessing scale with the number of cases: 10, 100 and 1000 tiny cases.

Each run is its own process (wall time includes interpreter start-up, imports and the pool); peak RSS is
sampled every 20 ms and summed over the process and its children. With nnU-Net's default number of
foreground samples (``1e8 // num_cases`` per case) the pooled fingerprint samples are 1e8 per channel
whatever the number of cases, so fingerprint memory is flat by design; preprocessing streams cases, so its
memory must not grow with the number of cases either. Time should grow linearly: the table gives the time
per case, which should stay about constant once start-up is amortised.

Usage::

    python benchmarks/bench_scale.py            # 10, 100 and 1000 cases of about 16 x 24 x 24
    python benchmarks/bench_scale.py --quick    # 10 and 30 cases (CI smoke)

Prints a table and writes benchmarks/results/scale.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench_common import run_measured  # a sibling module of the benchmark scripts

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
COUNTS = {"full": (10, 100, 1000), "quick": (10, 30)}
SHAPE = (16, 24, 24)

FINGERPRINT = """
import sys
from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint
raw, workers, output = sys.argv[1:4]
extract_fingerprint(RawDataset.from_folder(raw), num_workers=int(workers)).save(output)
"""
PREPROCESS = """
import sys
from nnseg.dataset import RawDataset
from nnseg.planning import Planner
from nnseg.fingerprint import Fingerprint
from nnseg.preprocessing import preprocess_dataset
raw, workers, fingerprint, store = sys.argv[1:5]
dataset = RawDataset.from_folder(raw)
plan = Planner().plan(Fingerprint.load(fingerprint), dataset.spec)["3d_fullres"]
preprocess_dataset(dataset, plan, store, num_workers=int(workers), progress=False)
"""


def _measure(command: list[str]) -> tuple[float, int]:
    """Run ``command``; return (wall seconds, peak RSS bytes of its process tree)."""
    seconds, peak, _ = run_measured(command)
    return seconds, peak


def _startup() -> float:
    """Seconds for a fresh interpreter to import the preprocessing worker's modules (paid once per process)."""
    seconds, _ = _measure([sys.executable, "-c", "import nnseg.preprocessing._run, nnseg.fingerprint"])
    return seconds


def run_count(num_cases: int, workers: int, work: Path) -> list[dict[str, Any]]:
    """Fingerprint and preprocess ``num_cases`` tiny synthetic cases; one row per stage."""
    from nnseg.testing import make_synthetic_dataset

    folder = work / f"n{num_cases}"
    raw = make_synthetic_dataset(folder / "raw", num_cases=num_cases, shape=SHAPE, seed=2)
    rows = []
    runs = {
        "fingerprint": [sys.executable, "-c", FINGERPRINT, str(raw), str(workers), str(folder / "fp.json")],
        "preprocess": [
            sys.executable,
            "-c",
            PREPROCESS,
            str(raw),
            str(workers),
            str(folder / "fp.json"),
            str(folder / "store"),
        ],  # fmt: skip
    }
    for stage, command in runs.items():
        seconds, peak = _measure(command)
        rows.append({"stage": stage, "cases": num_cases, "workers": workers, "seconds": round(seconds, 2),
                     "ms_per_case": round(1000 * seconds / num_cases, 1), "peak_rss_mb": round(peak / 2**20)})  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)  # our own scratch folder
    return rows


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 30 cases only")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="worker counts (default 1)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    counts = COUNTS["quick" if args.quick else "full"]
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        startup = _startup()
        rows = [row for workers in args.workers for n in counts for row in run_count(n, workers, Path(tmp))]
    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "case_shape": list(SHAPE), "load_average_before": load_before, "load_average_after": _load(),
            "startup_s": round(startup, 2)}  # fmt: skip
    print(f"{os.cpu_count()} CPUs, {platform.platform()}, load average {load_before} -> {info['load_average_after']}; "
          f"cases of about {SHAPE}; interpreter start-up + imports {startup:.2f} s per process")  # fmt: skip
    print("stage | cases | workers | seconds | ms per case | peak RSS MB")
    for r in rows:
        print(
            f"{r['stage']} | {r['cases']} | {r['workers']} | {r['seconds']:.2f} | {r['ms_per_case']:.1f} | {r['peak_rss_mb']}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
