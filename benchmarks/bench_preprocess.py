"""Benchmark the preprocessed store: on-disk array formats, then preprocess_dataset throughput.

Part 1 compares array formats on one synthetic, CT-normalised case (image float32 + label int8):

* ``blosc2-lz4hc`` -- what the store writes (nnseg.preprocessing._arrays: LZ4HC level 5, byte shuffle,
  chunks/blocks from the patch size, one compression thread so the bytes are reproducible);
* ``blosc2-lz4hc-2t`` -- the same with two compression threads (faster, but the file bytes change from run
  to run, see the ``deterministic`` column);
* ``blosc2-zstd1`` -- ZSTD level 1 instead of LZ4HC;
* ``npy`` -- plain ``np.save`` files read through ``np.load(mmap_mode="r")``.

For each: write time, size on disk, a random training patch (image + label) with a warm page cache and with
the file's pages evicted (``posix_fadvise(DONTNEED)``, per file, no root needed), and a whole-case read.

Part 2 preprocesses a synthetic CT dataset (3d_fullres of nnseg's plans) at equal worker counts with
``nnseg`` (``preprocess_dataset``), with nnU-Net's ``nnUNetv2_preprocess -d ID -c 3d_fullres -np N`` (when
nnunetv2 is installed; same plans file) and with the IO floor (read the raw files, write the output arrays,
nothing else). Each runs as its own process; wall time includes interpreter start-up, imports and the pool;
peak RSS is sampled every 20 ms and summed over the process and all its children.

Usage::

    python benchmarks/bench_preprocess.py            # full sizes
    python benchmarks/bench_preprocess.py --quick    # small sizes, about a minute

Prints the tables and writes benchmarks/results/preprocess.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blosc2
import numpy as np
from _bench_common import run_measured  # a sibling module of the benchmark scripts

from nnseg.preprocessing._arrays import array_layout, read_array, read_region, write_array

RESULTS = Path(__file__).resolve().parent / "results" / "preprocess.json"
SIZES = {  # (case shape, patch size, random patches, dataset case shape, dataset cases)
    "full": ((128, 256, 256), (96, 160, 160), 40, (96, 160, 160), 16),
    "quick": ((48, 96, 96), (32, 64, 64), 20, (64, 96, 96), 8),
}


# ----------------------------------------------------------------------------------- part 1: formats
def _blosc2_writer(codec: Any, clevel: int, nthreads: int) -> Callable[[Path, np.ndarray, tuple[int, ...]], None]:
    def write(path: Path, array: np.ndarray, patch: tuple[int, ...]) -> None:
        chunks, blocks = array_layout(array.shape, patch, array.dtype.itemsize)
        cparams = blosc2.CParams(codec=codec, clevel=clevel, filters=[blosc2.Filter.SHUFFLE],
                                 typesize=array.dtype.itemsize, nthreads=nthreads)  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp")
        blosc2.asarray(array, urlpath=str(tmp), mode="w", chunks=chunks, blocks=blocks, cparams=cparams)
        os.replace(tmp, path)

    return write


def _write_store(path: Path, array: np.ndarray, patch: tuple[int, ...]) -> None:
    write_array(path, array, patch_size=patch)


def _write_npy(path: Path, array: np.ndarray, patch: tuple[int, ...]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def _read_npy_region(path: Path, index: tuple[slice, ...]) -> np.ndarray:
    return np.array(np.load(path, mmap_mode="r")[index])


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path)


FORMATS: dict[str, dict[str, Any]] = {
    "blosc2-lz4hc": {"suffix": ".b2nd", "write": _write_store, "region": read_region, "whole": read_array},
    "blosc2-lz4hc-2t": {
        "suffix": ".b2nd",
        "write": _blosc2_writer(blosc2.Codec.LZ4HC, 5, 2),
        "region": read_region,
        "whole": read_array,
    },  # fmt: skip
    "blosc2-zstd1": {
        "suffix": ".b2nd",
        "write": _blosc2_writer(blosc2.Codec.ZSTD, 1, 1),
        "region": read_region,
        "whole": read_array,
    },  # fmt: skip
    "npy": {"suffix": ".npy", "write": _write_npy, "region": _read_npy_region, "whole": _read_npy},
}


def _evict(*paths: Path) -> None:
    """Drop the page-cache pages of these files (clean pages only; harmless, per file)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _synthetic_case(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like case as preprocessing leaves it: CT-normalised, then resampled (order 3 image, order 0 label).

    The case is drawn at 0.8x the size and resampled up, so the image holds continuous values as after
    nnU-Net's resampling (raw synthetic CT is integer-valued and would compress unrealistically well).
    """
    from scipy.ndimage import zoom

    from nnseg.testing import make_synthetic_case

    small = tuple(max(8, round(0.8 * s)) for s in shape)
    image, label = make_synthetic_case(small, modality="ct", num_classes=3, seed=7)
    foreground = image[label > 0]
    low, high = np.percentile(foreground, [0.5, 99.5])
    normalised = (np.clip(image[0], low, high) - foreground.mean()) / max(float(foreground.std()), 1e-8)
    factors = [t / s for t, s in zip(shape, small)]
    data = zoom(normalised, factors, order=3)[None].astype(np.float32)
    seg = zoom(label[0], factors, order=0)[None].astype(np.int8)
    return data, seg


def _random_patches(shape: tuple[int, ...], patch: tuple[int, ...], count: int) -> list[tuple[slice, ...]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        starts = [int(rng.integers(0, max(1, s - p + 1))) for s, p in zip(shape, patch)]
        out.append((slice(None), *(slice(a, a + p) for a, p in zip(starts, patch))))
    return out


def _time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_format(name: str, folder: Path, data: np.ndarray, seg: np.ndarray, patch: tuple[int, ...],
                 patches: list[tuple[slice, ...]]) -> dict[str, Any]:  # fmt: skip
    """Measure one format; returns a row of the table."""
    spec = FORMATS[name]
    paths = (folder / f"{name}.data{spec['suffix']}", folder / f"{name}.seg{spec['suffix']}")

    def write() -> None:
        spec["write"](paths[0], data, patch)
        spec["write"](paths[1], seg, patch)

    write_s = _time(write, 3)
    first = [_digest(p) for p in paths]
    write()
    deterministic = first == [_digest(p) for p in paths]
    check = spec["region"](paths[0], patches[0])
    if not np.array_equal(check, data[patches[0]]) or not np.array_equal(spec["whole"](paths[1]), seg):
        raise RuntimeError(f"{name}: read back differs from what was written")

    def read_patches(cold: bool) -> float:
        total = 0.0
        for index in patches:
            if cold:
                _evict(*paths)
            start = time.perf_counter()
            spec["region"](paths[0], index)
            spec["region"](paths[1], index)
            total += time.perf_counter() - start
        return 1000 * total / len(patches)

    read_patches(False)  # warm the cache
    row = {
        "format": name,
        "write_s": write_s,
        "size_mb": sum(p.stat().st_size for p in paths) / 2**20,
        "deterministic": deterministic,
        "patch_ms_warm": read_patches(False),
        "patch_ms_cold": read_patches(True),
        "whole_ms_warm": 1000 * _time(lambda: [spec["whole"](p) for p in paths], 3),
    }
    _evict(*paths)
    start = time.perf_counter()
    for p in paths:
        spec["whole"](p)
    row["whole_ms_cold"] = 1000 * (time.perf_counter() - start)
    return row


def run_formats(shape: tuple[int, ...], patch: tuple[int, ...], num_patches: int, work: Path) -> list[dict[str, Any]]:
    """Part 1: every format on one case."""
    data, seg = _synthetic_case(shape)
    patches = _random_patches(shape, patch, num_patches)
    rows = []
    for name in FORMATS:
        folder = work / name
        folder.mkdir()
        rows.append(bench_format(name, folder, data, seg, patch, patches))
    raw_mb = (data.nbytes + seg.nbytes) / 2**20
    for row in rows:
        row["ratio"] = raw_mb / row["size_mb"]
    return rows


# ----------------------------------------------------------------------------------- part 2: throughput
NNSEG_RUN = """
import json, sys
from nnseg.dataset import RawDataset
from nnseg.planning import Plans
from nnseg.preprocessing import preprocess_dataset
raw, plans, store, workers = sys.argv[1:]
plan = Plans.load(plans)["3d_fullres"]
preprocess_dataset(RawDataset.from_folder(raw), plan, store, num_workers=int(workers), progress=False)
"""
FLOOR_RUN = """
import sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from nnseg.dataset import RawDataset
from nnseg.io import read_images, read_segmentation
from nnseg.preprocessing import PreprocessedStore
from nnseg.preprocessing._arrays import write_array

def one(args):
    case, store, out = args
    done = PreprocessedStore(store).read_case(case.case_id)  # the outputs to write (not timed)
    start = time.perf_counter()
    read_images(case.image_paths)
    read_segmentation(case.label_path)
    patch = PreprocessedStore(store).manifest().chunk_patch_size
    write_array(Path(out) / f"{case.case_id}.data.b2nd", done.data, patch_size=patch)
    write_array(Path(out) / f"{case.case_id}.seg.b2nd", done.seg, patch_size=patch)
    return time.perf_counter() - start

if __name__ == "__main__":
    raw, store, out, workers = sys.argv[1:]
    Path(out).mkdir()
    cases = RawDataset.from_folder(raw).cases
    with ProcessPoolExecutor(int(workers)) as pool:
        seconds = sum(pool.map(one, [(c, store, out) for c in cases]))
    print(seconds / int(workers))
"""


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``cmd``; return (wall seconds, peak RSS of its process tree summed over processes, stdout)."""
    return run_measured(cmd, env)


def _prepare(case_shape: tuple[int, ...], num_cases: int, work: Path) -> tuple[Path, Path]:
    """Synthetic raw dataset (nnU-Net layout) + nnseg's plans for it; returns (raw dataset dir, plans file)."""
    from nnseg.dataset import RawDataset
    from nnseg.fingerprint import extract_fingerprint
    from nnseg.planning import Planner
    from nnseg.testing import make_synthetic_dataset

    raw = make_synthetic_dataset(work / "nnUNet_raw", num_cases=num_cases, shape=case_shape)
    dataset = RawDataset.from_folder(raw)
    plans = Planner().plan(extract_fingerprint(dataset), dataset.spec, dataset_name=raw.name)
    nnunet_pre = work / "nnUNet_preprocessed" / raw.name
    nnunet_pre.mkdir(parents=True)
    plans.save(nnunet_pre / "nnUNetPlans.json")
    shutil.copy(raw / "dataset.json", nnunet_pre / "dataset.json")
    return raw, nnunet_pre / "nnUNetPlans.json"


def stage_profile(raw: Path, plans: Path, work: Path) -> dict[str, float]:
    """Where the time goes, in this process, in ms per case (and the start-up of one worker process in s).

    ``read`` is the image and label files (``of which integrity scan``: nnseg's own pass over the NIfTI bytes,
    see nnseg._integrity); ``compute`` crop, normalise, resample and class locations; ``write`` the whole store
    write of a case (``of which compress``: the two blosc2 arrays alone; the rest is the readback check,
    SHA-256, the locations file and the marker).
    """
    from nnseg._integrity import scan_nifti
    from nnseg.dataset import RawDataset
    from nnseg.io import read_images, read_segmentation
    from nnseg.planning import Plans
    from nnseg.preprocessing import PreprocessedStore, Preprocessor

    dataset = RawDataset.from_folder(raw)
    plan = Plans.load(plans)["3d_fullres"]
    preprocessor, store = Preprocessor(plan, dataset.spec), PreprocessedStore(work / "profile_store")
    patch = store.initialise(plan, dataset.spec).chunk_patch_size
    totals = dict.fromkeys(("read", "integrity_scan", "compute", "write", "compress"), 0.0)
    for case in dataset.cases:
        start = time.perf_counter()
        images, geometry = read_images(case.image_paths)
        seg, _ = read_segmentation(case.label_path)
        read_done = time.perf_counter()
        result = preprocessor.preprocess(images, geometry.spacing, seg=seg, geometry=geometry, case_id=case.case_id)
        computed = time.perf_counter()
        store.write_case(result)
        written = time.perf_counter()
        for path in case.paths:
            scan_nifti(path)
        scanned = time.perf_counter()
        write_array(work / "profile.b2nd", result.data, patch_size=patch)
        write_array(work / "profile.b2nd", result.seg, patch_size=patch)
        compressed = time.perf_counter()
        for key, value in (("read", read_done - start), ("compute", computed - read_done), ("write", written - computed),
                           ("integrity_scan", scanned - written), ("compress", compressed - scanned)):  # fmt: skip
            totals[key] += value
    profile = {f"{key}_ms": round(1000 * value / len(dataset.cases), 1) for key, value in totals.items()}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import nnseg.preprocessing._run"], check=True)
    profile["worker_startup_s"] = round(time.perf_counter() - start, 2)
    return profile


def add_idle(rows: list[dict[str, Any]], profile: dict[str, float]) -> None:
    """Add to each nnseg row the time not explained by start-up and per-case work (pool overhead, idle workers).

    Expected wall time: one interpreter start-up, plus (with helpers) one more start-up that the caller
    overlaps with its own cases, plus cases x (read + compute + write) / workers.
    """
    per_case = (profile["read_ms"] + profile["compute_ms"] + profile["write_ms"]) / 1000
    for row in rows:
        if row["tool"] == "nnseg":
            expected = profile["worker_startup_s"] + row["cases"] * per_case / row["workers"]
            row["expected_s"] = round(expected, 2)
            row["unexplained_s"] = round(row["seconds"] - expected, 2)


def run_throughput(case_shape: tuple[int, ...], num_cases: int, workers: list[int],
                   work: Path) -> tuple[list[dict[str, Any]], dict[str, float]]:  # fmt: skip
    """Part 2: cases/s and peak RSS of nnseg, nnU-Net (when installed) and the IO floor at equal workers."""
    raw, plans = _prepare(case_shape, num_cases, work)
    profile = stage_profile(raw, plans, work)
    # also look beside this interpreter: `.venv/bin/python bench_preprocess.py` without an activated venv
    nnunet_cli = shutil.which("nnUNetv2_preprocess") or shutil.which(
        "nnUNetv2_preprocess", path=str(Path(sys.executable).parent)
    )
    rows = []
    for n in workers:
        store = work / f"nnseg_{n}"
        runs = {"nnseg": [sys.executable, "-c", NNSEG_RUN, str(raw), str(plans), str(store), str(n)]}
        if nnunet_cli:
            runs["nnunetv2"] = [nnunet_cli, "-d", raw.name.split("_")[0][7:], "-c", "3d_fullres", "-np", str(n)]
        for tool, cmd in runs.items():
            env = {**os.environ, "nnUNet_raw": str(raw.parent), "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
                   "nnUNet_results": str(work / "nnUNet_results")}  # fmt: skip
            seconds, peak, _ = _measure(cmd, env)
            rows.append({"tool": tool, "workers": n, "cases": num_cases, "seconds": seconds,
                         "cases_per_s": num_cases / seconds, "peak_rss_mb": peak / 2**20})  # fmt: skip
        floor_cmd = [sys.executable, "-c", FLOOR_RUN, str(raw), str(store), str(work / f"floor_{n}"), str(n)]
        seconds, peak, out = _measure(floor_cmd)
        io_seconds = float(out.strip().splitlines()[-1])
        rows.append({"tool": "io-floor", "workers": n, "cases": num_cases, "seconds": io_seconds,
                     "cases_per_s": num_cases / io_seconds, "peak_rss_mb": peak / 2**20,
                     "note": "read raw files + write outputs only (per-case time / workers; no start-up)"})  # fmt: skip
    add_idle(rows, profile)
    return rows, profile


# ----------------------------------------------------------------------------------- report
def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    model = ""
    if Path("/proc/cpuinfo").is_file():
        lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        model = lines[0].split(":", 1)[1].strip() if lines else ""
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "blosc2": blosc2.__version__}  # fmt: skip


def print_tables(formats: list[dict[str, Any]], throughput: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """Print both tables."""
    print(f"machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['platform']}, blosc2 {info['blosc2']}")
    print(f"case {info['case_shape']} float32 + int8 label, patch {info['patch_size']}, "
          f"{info['num_patches']} random patches")  # fmt: skip
    header = ("format", "write s", "MB", "ratio", "determ.", "patch ms warm", "patch ms cold", "whole ms warm",
              "whole ms cold")  # fmt: skip
    print(" | ".join(header))
    for r in formats:
        print(f"{r['format']} | {r['write_s']:.3f} | {r['size_mb']:.1f} | {r['ratio']:.1f} | {r['deterministic']} | "
              f"{r['patch_ms_warm']:.2f} | {r['patch_ms_cold']:.2f} | {r['whole_ms_warm']:.1f} | "
              f"{r['whole_ms_cold']:.1f}")  # fmt: skip
    print(f"\n3d_fullres preprocessing, {info['dataset_cases']} synthetic CT cases of about "
          f"{info['dataset_case_shape']} (whole process: start-up, imports, pool)")  # fmt: skip
    print("tool | workers | seconds | cases/s | peak RSS MB (all processes) | unexplained s (pool, idle)")
    for r in throughput:
        print(f"{r['tool']} | {r['workers']} | {r['seconds']:.2f} | {r['cases_per_s']:.2f} | {r['peak_rss_mb']:.0f} | "
              f"{r.get('unexplained_s', '-')}")  # fmt: skip


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON output file")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary folder)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    shape, patch, num_patches, dataset_shape, dataset_cases = SIZES[mode]
    work = Path(tempfile.mkdtemp(prefix="nnseg_bench_pre_", dir=args.work))
    try:
        formats = run_formats(shape, patch, num_patches, work)
        throughput, profile = run_throughput(dataset_shape, dataset_cases, args.workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # our own scratch folder
    info = {**machine(), "mode": mode, "case_shape": shape, "patch_size": patch, "num_patches": num_patches,
            "dataset_case_shape": dataset_shape, "dataset_cases": dataset_cases, "load_average": _load()}  # fmt: skip
    print_tables(formats, throughput, info)
    print("\nwhere the time goes (one process, ms per case): " + ", ".join(f"{k} {v}" for k, v in profile.items()))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": info, "formats": formats, "throughput": throughput, "stages": profile}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
