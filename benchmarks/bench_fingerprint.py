"""Benchmark fingerprint extraction: nnseg (in memory and with the resumable cache) against nnU-Net v2.

A synthetic CT-like dataset is written once; then each variant runs as its own process (wall time includes
interpreter start-up, imports and the worker pool) with nnU-Net's default number of foreground samples
(``1e8 // num_cases`` per case and channel), at equal worker counts:

* ``nnseg`` -- ``extract_fingerprint(ds, num_workers=N)``, results kept in memory;
* ``nnseg+cache`` -- the same with ``cache_dir`` (every case's samples written to disk: resumable, shardable);
* ``nnunetv2`` -- ``nnUNetv2_extract_fingerprint -d ID -np N --clean --no_pbar`` (when nnunetv2 is installed).

Peak RSS is sampled every 20 ms and summed over the process and its children. The fingerprints of all
variants are compared (they must be equal).

Usage::

    python benchmarks/bench_fingerprint.py            # 16 cases of about 64 x 128 x 128
    python benchmarks/bench_fingerprint.py --quick    # 8 cases of about 32 x 64 x 64

Prints a table and writes benchmarks/results/fingerprint.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_common import run_measured  # a sibling module of the benchmark scripts

RESULTS = Path(__file__).resolve().parent / "results" / "fingerprint.json"
SIZES = {"full": ((64, 128, 128), 16), "quick": ((32, 64, 64), 8)}
DATASET_NAME = "Dataset301_BenchFingerprint"

NNSEG_SCRIPT = """
import json, sys
from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint
raw, workers, output = sys.argv[1:4]
cache = sys.argv[4] if len(sys.argv) > 4 else None
extract_fingerprint(RawDataset.from_folder(raw), num_workers=int(workers), cache_dir=cache).save(output)
"""


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``command``; return (wall seconds, peak RSS bytes). Raises if it fails."""
    seconds, peak, _ = run_measured(command, env)
    return seconds, peak


def _run_variants(root: Path, raw: Path, workers: int, env: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    variants: dict[str, list[str]] = {
        "nnseg": [sys.executable, "-c", NNSEG_SCRIPT, str(raw), str(workers), str(root / "nnseg.json")],
        "nnseg+cache": [
            sys.executable,
            "-c",
            NNSEG_SCRIPT,
            str(raw),
            str(workers),
            str(root / "nnseg_cache.json"),
            str(root / "cache"),
        ],  # fmt: skip
    }
    nnunet = shutil.which("nnUNetv2_extract_fingerprint", path=str(Path(sys.executable).parent))
    if nnunet:
        variants["nnunetv2"] = [nnunet, "-d", DATASET_NAME[7:10], "-np", str(workers), "--clean", "--no_pbar"]
    for name, command in variants.items():
        shutil.rmtree(root / "cache", ignore_errors=True)
        seconds, peak = _timed(command, env)
        cache_bytes = (
            sum(f.stat().st_size for f in (root / "cache").rglob("*") if f.is_file()) if name == "nnseg+cache" else 0
        )
        rows.append({"variant": name, "workers": workers, "seconds": round(seconds, 2),
                     "peak_rss_mb": round(peak / 2**20), "cache_mb": round(cache_bytes / 2**20)})  # fmt: skip
    return rows


def stage_profile(raw: Path) -> dict[str, float]:
    """Where the time goes, in this process: ms per case for reading and for the per-case work (crop, draw the
    samples), seconds for the pooled statistics (serial, in the caller), seconds of one worker's start-up."""
    import numpy as np

    from nnseg.dataset import RawDataset
    from nnseg.fingerprint import fingerprint_case
    from nnseg.fingerprint._extract import default_num_samples
    from nnseg.fingerprint._fingerprint import IntensityStats
    from nnseg.io import read_images, read_segmentation

    dataset = RawDataset.from_folder(raw)
    count = default_num_samples(len(dataset.cases))
    read_s = case_s = 0.0
    pooled = []
    for case in dataset.cases:
        start = time.perf_counter()
        images, geometry = read_images(case.image_paths)
        seg, _ = read_segmentation(case.label_path)
        read_done = time.perf_counter()
        pooled.append(fingerprint_case(images, seg, geometry.spacing, num_samples=count).samples[0])
        case_s, read_s = case_s + time.perf_counter() - read_done, read_s + read_done - start
    samples = np.concatenate(pooled)
    del pooled
    start = time.perf_counter()
    IntensityStats.from_samples(samples)
    stats_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import nnseg.fingerprint._extract"], check=True)
    return {"read_ms": round(1000 * read_s / len(dataset.cases), 1), "case_ms": round(1000 * case_s / len(dataset.cases), 1),
            "pooled_stats_s": round(stats_s, 2), "worker_startup_s": round(time.perf_counter() - start, 2)}  # fmt: skip


def _same_results(root: Path) -> dict[str, bool]:
    from nnseg.fingerprint import Fingerprint

    reference = Fingerprint.load(root / "nnseg.json").to_json()
    reference.pop("case_ids", None)
    others = {"nnseg+cache": root / "nnseg_cache.json",
              "nnunetv2": root / "preprocessed" / DATASET_NAME / "dataset_fingerprint.json"}  # fmt: skip
    same = {}
    for name, path in others.items():
        if path.is_file():
            data = Fingerprint.load(path).to_json()
            data.pop("case_ids", None)
            same[name] = data == reference
    return same


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from nnseg.testing import make_synthetic_dataset

    shape, num_cases = SIZES["quick" if args.quick else "full"]
    with tempfile.TemporaryDirectory(prefix="bench_fingerprint_") as tmp:
        root = Path(tmp)
        raw = make_synthetic_dataset(root / "raw", num_cases=num_cases, shape=shape, modality="ct", seed=1,
                                     dataset_name=DATASET_NAME)  # fmt: skip
        env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
               "nnUNet_results": str(root / "results"), "nnUNet_n_proc_DA": "1"}  # fmt: skip
        rows = [row for workers in args.workers for row in _run_variants(root, raw, workers, env)]
        same = _same_results(root)
        profile = stage_profile(raw)
    print(f"{num_cases} cases of about {shape}, CT-like, one channel; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")  # fmt: skip
    print(f"{'variant':<12} {'workers':>7} {'seconds':>8} {'peak RSS MB':>12} {'cache MB':>9}")
    for row in rows:
        print(
            f"{row['variant']:<12} {row['workers']:>7} {row['seconds']:>8.2f} {row['peak_rss_mb']:>12} {row['cache_mb']:>9}"
        )
    print("equal to nnseg's in-memory fingerprint: " + ", ".join(f"{k}: {v}" for k, v in same.items()))
    print("where the time goes (one process): " + ", ".join(f"{k} {v}" for k, v in profile.items()))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average at the end: {load}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"cases": num_cases, "shape": list(shape), "cpus": os.cpu_count(), "python": platform.python_version(),
              "rows": rows, "equal": same, "stages": profile, "load_average": load}  # fmt: skip
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
