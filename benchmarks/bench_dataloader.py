"""Benchmark the training data pipeline: batches per second of a 3d_fullres plan, nnseg next to nnU-Net v2.

A synthetic preprocessed store (``--cases`` CT-like cases of ``--shape``, three labels) is written once with
nnseg's ``PreprocessedStore``. Then, at each worker count:

* ``nnseg``: ``TrainingLoader`` (nnU-Net's default augmentation, deep-supervision targets, 33 % oversampling);
* ``nnunetv2`` (when installed): ``nnUNetDataLoader`` + ``nnUNetTrainer.get_training_transforms`` in
  ``NonDetMultiThreadedAugmenter`` (``SingleThreadedAugmenter`` at 0 workers), the trainer's own settings,
  reading the very same blosc2 files through a small adapter dataset (memory-mapped, lazily decompressed,
  exactly like ``nnUNetDatasetBlosc2``).

The first ``--warmup`` batches (worker start-up) are not timed; then ``--steps`` batches are. Each loader
runs ``--repeats`` times, alternating which goes first, and the best run counts (the machine's load from
other processes drifts; best-of is the least disturbed figure). The CPU seconds per batch (this process
plus its workers, from ``/proc``) are reported too: on a shared machine they are the steadier measure of
how much work a loader does. Finally the time of one nnseg sample is split into its stages in this
process: patch read + crop, spatial transform, intensity transforms + mirroring, target construction.

Usage::

    python benchmarks/bench_dataloader.py                  # patch 128^3, batch 2, workers 1 and 2
    python benchmarks/bench_dataloader.py --quick          # patch 64^3, a few steps

Prints a table and writes benchmarks/results/dataloader.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from nnseg.dataset import DatasetSpec
from nnseg.planning import ConfigurationPlan, Plans
from nnseg.preprocessing._arrays import open_array
from nnseg.preprocessing._case import CaseProperties, PreprocessedCase, parse_location_key
from nnseg.preprocessing._locations import location_classes, sample_class_locations
from nnseg.preprocessing._store import PreprocessedStore
from nnseg.testing import make_plans_json
from nnseg.training import AugmentationConfig, TrainingLoader, augment_sample, make_targets

SPEC = DatasetSpec(channel_names=("CT",), labels={"background": 0, "organ": 1, "lesion": 2}, num_training=4,
                   file_ending=".nii.gz")  # fmt: skip


def make_plan(patch: tuple[int, ...], batch_size: int) -> ConfigurationPlan:
    """A 3d_fullres configuration like nnU-Net's for a 128^3 patch (6 stages, deep supervision 5 outputs)."""
    stages = min(6, int(math.log2(min(patch))) - 1)
    plans = make_plans_json(patch, features=[32] * stages, convs_per_stage=2, instance_norm=True,
                            schemes=("CTNormalization",), batch_size=batch_size, median_shape=(160, 200, 200),
                            dataset_name="Dataset900_Bench")  # fmt: skip
    return Plans.from_json(plans)["3d_fullres"]


def write_store(root: Path, plan: ConfigurationPlan, num_cases: int, shape: tuple[int, ...]) -> PreprocessedStore:
    """Smooth CT-like images; label 1 above a threshold, label 2 a small blob inside it."""
    store = PreprocessedStore(root)
    store.initialise(plan, SPEC)
    rng = np.random.default_rng(0)
    for index in range(num_cases):
        case_shape = tuple(int(s * rng.uniform(0.85, 1.0)) for s in shape)
        image = gaussian_filter(rng.standard_normal(case_shape).astype(np.float32), 4.0)
        image /= image.std()
        seg = (image > 0.5).astype(np.int8)
        seg[image > 2.0] = 2
        properties = CaseProperties(spacing=(1.0, 1.0, 1.0), transpose_forward=(0, 1, 2),
                                    shape_before_cropping=case_shape,
                                    bbox_used_for_cropping=tuple((0, s) for s in case_shape),
                                    shape_after_cropping_and_before_resampling=case_shape,
                                    shape_after_resampling=case_shape, target_spacing=(1.0, 1.0, 1.0))  # fmt: skip
        locations = sample_class_locations(seg[None], location_classes(SPEC))
        store.write_case(PreprocessedCase(f"case_{index:03d}", image[None], seg[None], properties, locations))
    return store


def _tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live worker processes (Linux /proc; else this process)."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def time_iterator(iterator: Any, warmup: int, steps: int) -> tuple[float, float]:
    """Batches per second and CPU seconds per batch (all processes), after ``warmup`` untimed batches."""
    for _ in range(warmup):
        next(iterator)
    start, cpu = time.perf_counter(), _tree_cpu_seconds()
    for _ in range(steps):
        next(iterator)
    return steps / (time.perf_counter() - start), (_tree_cpu_seconds() - cpu) / steps


def bench_nnseg(
    store: PreprocessedStore, plan: ConfigurationPlan, workers: int, args: argparse.Namespace
) -> tuple[float, float]:
    """Batches/s of nnseg's TrainingLoader."""
    loader = TrainingLoader(store, store.case_ids(), plan, SPEC, seed=0, num_workers=workers, prefetch=3)
    iterator = loader.iterate()
    try:
        return time_iterator(iterator, args.warmup, args.steps)
    finally:
        iterator.close()


class _StoreAsNnunetDataset:
    """Serves nnseg store cases the way ``nnUNetDatasetBlosc2.load_case`` does (lazy blosc2 arrays)."""

    def __init__(self, store: PreprocessedStore) -> None:
        self.store = store
        self.identifiers = list(store.case_ids())

    def load_case(self, identifier: str) -> tuple[Any, Any, None, dict[str, Any]]:
        locations = self.store.read_class_locations(identifier) or {}
        properties = {"class_locations": {parse_location_key(k): v for k, v in locations.items()}}
        data = open_array(self.store.path(identifier, "data"))
        seg = open_array(self.store.path(identifier, "seg"))
        return data, seg, None, properties


def bench_nnunet(
    store: PreprocessedStore, plan: ConfigurationPlan, workers: int, args: argparse.Namespace
) -> tuple[float, float]:
    """Batches/s of nnU-Net v2's loader and default training transforms at the trainer's settings."""
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
    from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    config = AugmentationConfig.for_plan(plan, SPEC)
    initial = config.initial_patch_size(plan.patch_size)
    scales = [list(s) for s in config.deep_supervision_scales or ()]
    transforms = nnUNetTrainer.get_training_transforms(
        plan.patch_size, (-math.pi / 6, math.pi / 6), scales, (0, 1, 2), False, use_mask_for_norm=[False],
        is_cascaded=False, foreground_labels=[1, 2], regions=None, ignore_label=None,
    )  # fmt: skip
    label_manager = LabelManager(dict(SPEC.labels), None)
    loader = nnUNetDataLoader(_StoreAsNnunetDataset(store), plan.batch_size, initial, plan.patch_size,  # type: ignore[arg-type]
                              label_manager, oversample_foreground_percent=0.33, transforms=transforms)  # fmt: skip
    if workers == 0:
        generator: Any = SingleThreadedAugmenter(loader, None)
    else:
        generator = NonDetMultiThreadedAugmenter(loader, None, workers, max(6, workers // 2), None, False, 0.002)
    try:
        return time_iterator(generator, args.warmup, args.steps)
    finally:
        if workers:
            generator._finish()


def stage_breakdown(store: PreprocessedStore, plan: ConfigurationPlan, samples: int) -> dict[str, float]:
    """Milliseconds per sample of each stage of nnseg's pipeline, in this process, one thread."""
    loader = TrainingLoader(store, store.case_ids(), plan, SPEC, seed=0, num_workers=0)
    factory, config = loader.factory, loader.augmentation
    spatial_only = dataclasses.replace(config, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0, p_low_resolution=0,
                                       p_gamma=0, p_gamma_inverted=0, p_mirror_per_axis=0)  # fmt: skip
    totals = {"read + crop": 0.0, "spatial": 0.0, "spatial + intensity + mirror": 0.0, "targets": 0.0}
    torch.set_num_threads(1)  # a benchmark script; matches the workers
    for index in range(samples):
        rng = np.random.default_rng(index)
        case_id = factory.case_ids[index % len(factory.case_ids)]
        start = time.perf_counter()
        patch = factory.sampler.sample(store.read_patch, case_id, factory._shape(case_id),
                                       store.read_class_locations(case_id), index % 3 == 2, rng)  # fmt: skip
        totals["read + crop"] += time.perf_counter() - start
        for name, cfg in (("spatial", spatial_only), ("spatial + intensity + mirror", config)):
            start = time.perf_counter()
            data, seg = augment_sample(patch.data, patch.seg, plan.patch_size, cfg, np.random.default_rng(index))
            totals[name] += time.perf_counter() - start
        start = time.perf_counter()
        make_targets(data, seg, config)
        totals["targets"] += time.perf_counter() - start
    return {name: 1000 * value / samples for name, value in totals.items()}


def main() -> None:
    """Run the benchmark and print/write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, nargs=3, default=(128, 128, 128))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 200, 200))
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=(1, 2))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per loader, alternating order; the best counts")
    parser.add_argument("--stage-samples", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="patch 64^3, shape 80x96x96, 6 steps")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "dataloader.json")
    args = parser.parse_args()
    if args.quick:
        args.patch, args.shape, args.steps, args.stage_samples = (64, 64, 64), (80, 96, 96), 6, 6
    plan = make_plan(tuple(args.patch), args.batch_size)
    try:
        import nnunetv2  # noqa: F401

        have_nnunet = True
    except ImportError:
        have_nnunet = False
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", plan, args.cases, tuple(args.shape))
        for workers in args.workers:
            runs: dict[str, list[tuple[float, float]]] = {"nnseg": [], "nnunetv2": []}
            for repeat in range(args.repeats):  # alternate the order: A B, B A, ... (the machine's load drifts)
                order = ["nnseg", "nnunetv2"] if repeat % 2 == 0 else ["nnunetv2", "nnseg"]
                for name in order:
                    if name == "nnseg":
                        runs[name].append(bench_nnseg(store, plan, workers, args))
                    elif have_nnunet:
                        runs[name].append(bench_nnunet(store, plan, workers, args))
            row: dict[str, Any] = {"workers": workers, "runs": runs}
            for name, values in runs.items():
                if values:
                    row[f"{name}_batches_per_s"] = max(v[0] for v in values)
                    row[f"{name}_cpu_s_per_batch"] = min(v[1] for v in values)
            rows.append(row)
        stages = stage_breakdown(store, plan, args.stage_samples)
    report(rows, stages, plan, args)


def report(rows: list[dict[str, Any]], stages: dict[str, float], plan: ConfigurationPlan, args: argparse.Namespace) -> None:
    """Print the tables and write the JSON file."""
    print(f"patch {plan.patch_size}, batch {plan.batch_size}, {args.cases} cases of ~{tuple(args.shape)}, "
          f"{args.steps} timed batches after {args.warmup} warm-up, best of {args.repeats}")  # fmt: skip
    print(f"{'workers':>7} | {'nnseg batches/s':>15} | {'nnunetv2 batches/s':>18} | {'ratio':>5} | "
          f"{'nnseg CPU s/batch':>17} | {'nnunetv2 CPU s/batch':>20}")  # fmt: skip
    for row in rows:
        theirs = row.get("nnunetv2_batches_per_s")
        ratio = f"{row['nnseg_batches_per_s'] / theirs:5.2f}" if theirs else "  -  "
        theirs_text = f"{theirs:18.2f}" if theirs else f"{'not installed':>18}"
        theirs_cpu = row.get("nnunetv2_cpu_s_per_batch")
        theirs_cpu_text = f"{theirs_cpu:20.2f}" if theirs_cpu is not None else f"{'-':>20}"
        print(f"{row['workers']:>7} | {row['nnseg_batches_per_s']:15.2f} | {theirs_text} | {ratio} | "
              f"{row['nnseg_cpu_s_per_batch']:17.2f} | {theirs_cpu_text}")  # fmt: skip
    print("\nnnseg, one sample, one thread (ms):")
    for name, value in stages.items():
        print(f"  {name:<30} {value:8.1f}")
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "cpus": os.cpu_count()},
              "settings": {"patch_size": list(plan.patch_size), "batch_size": plan.batch_size, "cases": args.cases,
                           "shape": list(args.shape), "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats},
              "throughput": rows, "stage_ms_per_sample": stages}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, args.output)  # atomic: a reader never sees half a file
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
