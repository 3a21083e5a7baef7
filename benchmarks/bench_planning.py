"""Benchmark experiment planning: seconds per plan, nnseg versus nnU-Net v2's planners.

For a few hand-written fingerprints (no images are needed) this times

* ``nnseg`` -- ``Planner().plan`` and ``ResEncLPlanner().plan`` (median of ``--repeats`` runs);
* ``measure`` -- ``attach_memory_reports(plans, spec)``: the meta-device measurement of one training step of every
  configuration that ``nnseg plan`` adds to the planning (one run; nnU-Net has no counterpart);
* ``nnU-Net`` -- ``ExperimentPlanner`` / ``nnUNetPlannerResEncL`` ``.plan_experiment()`` as shipped (when
  nnunetv2 is installed): every memory estimate builds the network on the CPU, which includes torch's
  default weight initialisation;
* ``nnU-Net (meta)`` -- the same, with the estimate's network built on torch's ``meta`` device (no weights
  allocated or initialised), to show how much of nnU-Net's time that initialisation is.

nnU-Net runs in this process with ``nnUNet_raw`` / ``nnUNet_preprocessed`` pointing at a temporary folder;
its import time is not counted, its file writes are. Every run checks that nnseg's plans equal nnU-Net's
(patch and batch size of every configuration).

Usage::

    python benchmarks/bench_planning.py                  # all fingerprints (about two minutes with nnunetv2)
    python benchmarks/bench_planning.py --no-nnunet      # nnseg only (seconds)

Prints a table and writes benchmarks/results/planning.json (``--output`` to change). Seconds per fingerprint,
side by side with nnU-Net's extractor, are measured by ``benchmarks/bench_fingerprint.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from nnseg.dataset import DatasetSpec
from nnseg.fingerprint import Fingerprint
from nnseg.planning import Planner, Plans, ResEncLPlanner, attach_memory_reports

RESULTS = Path(__file__).parent / "results" / "planning.json"
STATS = {"mean": 100.5, "median": 98.0, "std": 40.25, "min": -200.0, "max": 400.0, "percentile_99_5": 300.0,
         "percentile_00_5": -50.0}  # fmt: skip

# name -> (spacing, shape, number of cases, channel names, jitter of the shape per axis)
FINGERPRINTS: dict[str, tuple[tuple[float, ...], tuple[int, ...], int, tuple[str, ...], tuple[int, ...]]] = {
    "iso_ct_150": ((1.0, 1.0, 1.0), (150, 150, 150), 40, ("CT",), (20, 20, 20)),
    "aniso5_mr_4ch": ((5.0, 1.0, 1.0), (24, 200, 200), 12, ("T1", "T2", "FLAIR", "DWI"), (4, 20, 20)),
    "ct_lowres_120x420x420": ((2.5, 0.8, 0.8), (120, 420, 420), 60, ("CT",), (20, 20, 20)),
    "2d_rgb_500": ((999.0, 1.0, 1.0), (1, 500, 500), 30, ("R", "G", "B"), (0, 80, 80)),
}
PLANNERS: dict[str, Callable[[], Planner]] = {"default": Planner, "resenc_l": ResEncLPlanner}


def fingerprint_json(name: str) -> dict[str, Any]:
    """Return the ``dataset_fingerprint.json`` content of one benchmark fingerprint."""
    spacing, shape, num_cases, channels, jitter = FINGERPRINTS[name]
    rng = np.random.default_rng(list(FINGERPRINTS).index(name))
    shapes = np.asarray(shape) + rng.integers(-np.asarray(jitter), np.asarray(jitter) + 1, (num_cases, 3))
    return {
        "spacings": [list(spacing)] * num_cases,
        "shapes_after_crop": shapes.tolist(),
        "foreground_intensity_properties_per_channel": {str(i): STATS for i in range(len(channels))},
        "median_relative_size_after_cropping": 1.0,
    }


def dataset_json(name: str) -> dict[str, Any]:
    """Return a ``dataset.json`` that lists its (absent) files, so nnU-Net reads no image."""
    _, shape, num_cases, channels, _ = FINGERPRINTS[name]
    ending = ".png" if shape[0] == 1 else ".nii.gz"
    return {
        "channel_names": {str(i): c for i, c in enumerate(channels)},
        "labels": {"background": 0, "a": 1, "b": 2},
        "numTraining": num_cases,
        "file_ending": ending,
        "overwrite_image_reader_writer": "NaturalImage2DIO" if shape[0] == 1 else "SimpleITKIO",
        "dataset": {f"c{i}": {"images": [f"c{i}{ending}"], "label": f"c{i}{ending}"} for i in range(num_cases)},
    }


def _dataset_name(name: str) -> str:
    return f"Dataset{950 + list(FINGERPRINTS).index(name)}_{name}"


def time_nnseg(name: str, planner: str, repeats: int) -> tuple[float, Plans]:
    """Median seconds of one nnseg plan, and the plans."""
    fingerprint, spec = Fingerprint.from_json(fingerprint_json(name)), DatasetSpec.from_dict(dataset_json(name))
    seconds, plans = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        plans = PLANNERS[planner]().plan(fingerprint, spec, dataset_name=_dataset_name(name))
        seconds.append(time.perf_counter() - started)
    assert plans is not None  # invariant: repeats >= 1
    return statistics.median(seconds), plans


def time_measurement(name: str, plans: Plans) -> float:
    """Seconds of measuring one training step of every configuration on the meta device (what `nnseg plan` adds)."""
    started = time.perf_counter()
    attach_memory_reports(plans, DatasetSpec.from_dict(dataset_json(name)), device="meta")
    return time.perf_counter() - started


def _meta_estimate(original: Callable[..., int]) -> Callable[..., int]:
    import torch

    def estimate(*args: Any, **kwargs: Any) -> int:
        with torch.device("meta"):
            return int(original(*args, **kwargs))

    return estimate


def time_nnunet(name: str, planner: str, root: Path, *, meta: bool) -> tuple[float, dict[str, Any]]:
    """Seconds of one nnU-Net ``plan_experiment()`` (fresh plans file), and its plans."""
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as default_module
    from nnunetv2.experiment_planning.experiment_planners.residual_unets import residual_encoder_unet_planners as resenc

    dataset = _dataset_name(name)
    for folder, content in (("raw", dataset_json(name)), ("pre", fingerprint_json(name))):
        (root / folder / dataset).mkdir(parents=True, exist_ok=True)
        file = "dataset.json" if folder == "raw" else "dataset_fingerprint.json"
        (root / folder / dataset / file).write_text(json.dumps(content))
    cls = default_module.ExperimentPlanner if planner == "default" else resenc.nnUNetPlannerResEncL
    original = default_module.ExperimentPlanner.__dict__["static_estimate_VRAM_usage"]
    if meta:
        default_module.ExperimentPlanner.static_estimate_VRAM_usage = staticmethod(_meta_estimate(original.__func__))
    try:
        started = time.perf_counter()
        instance = cls(dataset)
        plans_file = root / "pre" / dataset / f"{instance.plans_identifier}.json"
        plans_file.unlink(missing_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):
            instance.plan_experiment()
        seconds = time.perf_counter() - started
    finally:
        default_module.ExperimentPlanner.static_estimate_VRAM_usage = original
    return seconds, json.loads(plans_file.read_text())


def _same(ours: Plans, theirs: dict[str, Any]) -> bool:
    mine = {n: (list(ours[n].patch_size), ours[n].batch_size) for n in ours.configuration_names}
    other = {n: (c["patch_size"], c["batch_size"]) for n, c in theirs["configurations"].items() if "patch_size" in c}
    return {n: v for n, v in mine.items() if n != "3d_cascade_fullres"} == other


def run(repeats: int, with_nnunet: bool, measure: bool = True) -> list[dict[str, Any]]:
    """Time every fingerprint with every planner; one row per (fingerprint, planner)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                          nnUNet_results=str(root / "results"), nnUNet_n_proc_DA=str(os.cpu_count() or 1))  # fmt: skip
        for name in FINGERPRINTS:
            for planner in PLANNERS:
                seconds, plans = time_nnseg(name, planner, repeats)
                row: dict[str, Any] = {"fingerprint": name, "planner": planner, "nnseg_s": seconds,
                                       "measure_s": time_measurement(name, plans) if measure else None,
                                       "configurations": list(plans.configuration_names)}  # fmt: skip
                if with_nnunet:
                    row["nnunet_s"], theirs = time_nnunet(name, planner, root, meta=False)
                    row["nnunet_meta_s"], _ = time_nnunet(name, planner, root, meta=True)
                    row["same_plans"] = _same(plans, theirs)
                rows.append(row)
                print(f"  {name:<24} {planner:<9} done", flush=True)
    return rows


def machine() -> dict[str, Any]:
    """Describe the machine and the library versions."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}  # fmt: skip
    with contextlib.suppress(PackageNotFoundError):
        info["nnunetv2"] = version("nnunetv2")
    return info


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one line per (fingerprint, planner)."""
    header = f"{'fingerprint':<24} {'planner':<9} {'configurations':<42} {'nnseg s':>9} {'measure s':>9}"
    with_nnunet = "nnunet_s" in rows[0]
    if with_nnunet:
        header += f" {'nnU-Net s':>10} {'(meta) s':>9} {'speed-up':>9} same"
    print(header)
    for row in rows:
        measured = "-" if row["measure_s"] is None else f"{row['measure_s']:.2f}"
        line = (f"{row['fingerprint']:<24} {row['planner']:<9} {','.join(row['configurations']):<42} "
                f"{row['nnseg_s']:>9.4f} {measured:>9}")  # fmt: skip
        if with_nnunet:
            line += (f" {row['nnunet_s']:>10.2f} {row['nnunet_meta_s']:>9.2f} {row['nnunet_s'] / row['nnseg_s']:>8.0f}x"
                     f" {'yes' if row['same_plans'] else 'NO'}")  # fmt: skip
        print(line)


def main() -> None:
    """Run the benchmark, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5, help="nnseg runs per plan (median is reported)")
    parser.add_argument("--no-nnunet", action="store_true", help="do not run nnU-Net's planners")
    parser.add_argument("--no-measure", action="store_true", help="do not time the memory measurement")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON output file")
    args = parser.parse_args()
    with_nnunet = not args.no_nnunet
    if with_nnunet:
        try:
            import nnunetv2  # noqa: F401
        except ImportError:
            print("nnunetv2 is not installed: timing nnseg only")
            with_nnunet = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run(max(1, args.repeats), with_nnunet, measure=not args.no_measure)
    print_table(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
