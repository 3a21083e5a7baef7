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
from multiprocessing.reduction import ForkingPickler
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
from nnseg.training import AugmentationConfig, Batch, TrainingLoader, augment_sample, make_targets
from nnseg.training._batches import stack_tensors

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


def _children_cpu_seconds() -> float:
    """CPU seconds used so far by the live worker processes of this process (Linux /proc; else 0)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def time_iterator(iterator: Any, warmup: int, steps: int, workers: int = 0) -> dict[str, float]:
    """Throughput and where the CPU goes, after ``warmup`` untimed batches.

    Returns batches/s, CPU s per batch (all processes), the main process's CPU s per batch (receiving,
    unpickling, device work) and the workers' idle fraction (1 - worker CPU / (workers x wall time)).
    """
    for _ in range(warmup):
        next(iterator)
    start, main, children = time.perf_counter(), time.process_time(), _children_cpu_seconds()
    for _ in range(steps):
        next(iterator)
    wall = time.perf_counter() - start
    main, children = time.process_time() - main, _children_cpu_seconds() - children
    idle = 1.0 - children / (workers * wall) if workers else 0.0
    return {"batches_per_s": steps / wall, "cpu_s_per_batch": (main + children) / steps,
            "main_cpu_s_per_batch": main / steps, "worker_idle_fraction": max(0.0, idle)}  # fmt: skip


def bench_nnseg(
    store: PreprocessedStore, plan: ConfigurationPlan, workers: int, args: argparse.Namespace, device: str | None = None
) -> dict[str, float]:
    """Batches/s of nnseg's TrainingLoader (``device``: augmentation on that device, batches end there)."""
    loader = TrainingLoader(store, store.case_ids(), plan, SPEC, seed=0, num_workers=workers, prefetch=3,
                            augmentation_device=device, pin_memory=device is not None and device.startswith("cuda"))  # fmt: skip
    iterator = loader.iterate()
    try:
        result = time_iterator(iterator, args.warmup, args.steps, workers)
        if device is not None and device.startswith("cuda"):
            torch.cuda.synchronize()
        return result
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
) -> dict[str, float]:
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
        return time_iterator(generator, args.warmup, args.steps, workers)
    finally:
        if workers:
            generator._finish()


def stage_breakdown(store: PreprocessedStore, plan: ConfigurationPlan, samples: int) -> dict[str, float]:
    """CPU milliseconds per sample of each stage of nnseg's pipeline, in this process, one thread.

    Per sample: read + crop, spatial transform, intensity transforms + mirroring, targets (-1 -> 0, deep-supervision
    downsampling). Per batch (divided by the batch size): stacking into shared memory, and the hand-over to the
    main process (pickling in the worker, unpickling in the main process: handles only, the data is not copied).
    """
    loader = TrainingLoader(store, store.case_ids(), plan, SPEC, seed=0, num_workers=0)
    factory, config = loader.factory, loader.augmentation
    spatial_only = dataclasses.replace(config, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0, p_low_resolution=0,
                                       p_gamma=0, p_gamma_inverted=0, p_mirror_per_axis=0)  # fmt: skip
    totals = {"read + crop": 0.0, "spatial": 0.0, "spatial + intensity + mirror": 0.0, "targets": 0.0,
              "stack into shared memory": 0.0, "hand-over (pickle + unpickle)": 0.0}  # fmt: skip
    torch.set_num_threads(1)  # a benchmark script; matches the workers
    clock = time.process_time  # CPU time: steadier than wall time on a shared machine
    for index in range(samples):
        rng = np.random.default_rng(index)
        case_id = factory.case_ids[index % len(factory.case_ids)]
        start = clock()
        patch = factory.crop(case_id, index % 3 == 2, rng)
        totals["read + crop"] += clock() - start
        for name, cfg in (("spatial", spatial_only), ("spatial + intensity + mirror", config)):
            start = clock()
            data, seg = augment_sample(patch.data, patch.seg, plan.patch_size, cfg, np.random.default_rng(index))
            totals[name] += clock() - start
        start = clock()
        data, targets = make_targets(data, seg, config)
        totals["targets"] += clock() - start
        start = clock()
        batch = Batch(stack_tensors([data] * plan.batch_size, True),
                      tuple(stack_tensors([t] * plan.batch_size, True) for t in targets), (case_id,), index)  # fmt: skip
        totals["stack into shared memory"] += (clock() - start) / plan.batch_size
        start = clock()
        ForkingPickler.loads(bytes(ForkingPickler.dumps(batch)))
        totals["hand-over (pickle + unpickle)"] += (clock() - start) / plan.batch_size
    out = {name: 1000 * value / samples for name, value in totals.items()}
    out["intensity + mirror"] = out.pop("spatial + intensity + mirror") - out["spatial"]
    return out


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
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # device-side augmentation targets
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", plan, args.cases, tuple(args.shape))
        for workers in args.workers:
            names = ["nnseg", *(["nnunetv2"] if have_nnunet else []), *(f"nnseg_aug_{d}" for d in devices)]
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            for repeat in range(args.repeats):  # alternate the order: A B, B A, ... (the machine's load drifts)
                for name in names if repeat % 2 == 0 else names[::-1]:
                    if name == "nnunetv2":
                        runs[name].append(bench_nnunet(store, plan, workers, args))
                    else:
                        device = name.rsplit("_", 1)[1] if name.startswith("nnseg_aug_") else None
                        runs[name].append(bench_nnseg(store, plan, workers, args, device))
            row: dict[str, Any] = {"workers": workers, "runs": runs}
            for name, values in runs.items():
                best = max(values, key=lambda v: v["batches_per_s"])
                row[name] = {**best, "cpu_s_per_batch": min(v["cpu_s_per_batch"] for v in values)}
                row[f"{name}_batches_per_s"] = row[name]["batches_per_s"]  # the flat keys run_all.py reads
                row[f"{name}_cpu_s_per_batch"] = row[name]["cpu_s_per_batch"]
            rows.append(row)
        stages = stage_breakdown(store, plan, args.stage_samples)
    load = {"before": list(load_before), "after": list(os.getloadavg())}
    report(rows, stages, plan, args, load)


def report(
    rows: list[dict[str, Any]], stages: dict[str, float], plan: ConfigurationPlan, args: argparse.Namespace,
    load: dict[str, list[float]],
) -> None:  # fmt: skip
    """Print the tables and write the JSON file."""
    print(f"patch {plan.patch_size}, batch {plan.batch_size}, {args.cases} cases of ~{tuple(args.shape)}, "
          f"{args.steps} timed batches after {args.warmup} warm-up, best of {args.repeats}; load average "
          f"{load['before'][0]:.1f} before, {load['after'][0]:.1f} after")  # fmt: skip
    print(f"{'workers':>7} | {'loader':<16} | {'batches/s':>9} | {'vs nnunetv2':>11} | {'CPU s/batch':>11} | "
          f"{'vs nnunetv2':>11} | {'main CPU s/batch':>16} | {'worker idle':>11}")  # fmt: skip
    for row in rows:
        theirs = row.get("nnunetv2")
        for name, value in row.items():
            if name == "runs" or not isinstance(value, dict):
                continue
            speed = f"{value['batches_per_s'] / theirs['batches_per_s']:11.2f}" if theirs else f"{'-':>11}"
            cpu = f"{value['cpu_s_per_batch'] / theirs['cpu_s_per_batch']:11.2f}" if theirs else f"{'-':>11}"
            print(f"{row['workers']:>7} | {name:<16} | {value['batches_per_s']:9.2f} | {speed} | "
                  f"{value['cpu_s_per_batch']:11.3f} | {cpu} | {value['main_cpu_s_per_batch']:16.3f} | "
                  f"{value['worker_idle_fraction']:11.2f}")  # fmt: skip
    print("\nnnseg, where one sample's CPU time goes (ms, one thread):")
    for name, value in stages.items():
        print(f"  {name:<32} {value:8.1f}")
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "cpus": os.cpu_count(), "load_average": load},
              "settings": {"patch_size": list(plan.patch_size), "batch_size": plan.batch_size, "cases": args.cases,
                           "shape": list(args.shape), "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats},
              "throughput": rows, "stage_cpu_ms_per_sample": stages}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, args.output)  # atomic: a reader never sees half a file
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
