"""Benchmark training: seconds per optimiser step, and the Dice reached after a fixed step budget.

Both on CPU, on a small 3d_fullres plan (PlainConvUNet, instance norm, deep supervision) and a synthetic
CT-like store (``bench_dataloader.write_store``: label 1 above a threshold, label 2 a core inside it).

1. **Seconds per step** of the optimiser step alone (forward, Dice+CE with deep supervision, backward, clip,
   SGD), on the CPU and, when present, on CUDA (AMP), on the same pre-built batches: nnseg's ``Trainer.training_step`` next to nnU-Net v2's
   ``nnUNetTrainer.train_step`` (when nnunetv2 is installed), both networks starting from the same weights.
   Runs alternate and the best of ``--repeats`` counts (other processes share the machine).
2. **Dice after a budget** of ``--budget`` steps: nnseg's ``Trainer.fit`` (its loader, augmentation and
   per-step poly schedule) next to nnU-Net's trainer driven by its own loader and training transforms (per-
   epoch poly schedule), same plan, same data, same seed for the initial weights. Both networks are then
   scored the same way: sliding-window prediction of the held-out cases (nnseg's ``validate_cases``, no
   mirroring) and the Dice over labels 1 and 2 in the preprocessed grid.
3. **Speed after a resume**: nnseg's seconds per step in the epoch before an interruption and in the first
   epoch after resuming from the checkpoint (``--skip-resume`` to leave it out).

Usage::

    python benchmarks/bench_training.py            # patch 32x64x64, batch 2, budget 200 steps
    python benchmarks/bench_training.py --quick    # patch 16x32x32, budget 40 steps
    python benchmarks/bench_training.py --seeds 3  # three budget runs per trainer, mean Dice and spread

Prints a table and writes benchmarks/results/training.json (``--output`` to change).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_dataloader import SPEC, _StoreAsNnunetDataset, make_plan, write_store

from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore
from nnseg.training import AugmentationConfig, Callback, MetricsLog, Split, Trainer, TrainerConfig
from nnseg.training._final_validation import validate_cases


def nnunet_trainer(plan: ConfigurationPlan, scratch: Path, num_epochs: int, iterations: int,
                   device: str = "cpu") -> Any:  # fmt: skip
    """An initialised ``nnUNetTrainer`` for ``plan`` on ``device`` (its folders are set to ``scratch``)."""
    os.environ.update(nnUNet_raw=str(scratch), nnUNet_preprocessed=str(scratch / "pre"),
                      nnUNet_results=str(scratch / "res"), nnUNet_compile="false")  # fmt: skip
    folder = scratch / "pre" / "Dataset900_Bench" / plan.data_identifier
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case_000.b2nd").touch()  # lets nnU-Net infer its blosc2 dataset class
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    plans = {"dataset_name": "Dataset900_Bench", "plans_name": "nnUNetPlans",
             "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
             "original_median_shape_after_transp": [160, 200, 200], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
             "configurations": {"3d_fullres": plan.to_json()}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "continue_training": False,
             "foreground_intensity_properties_per_channel": {"0": {"mean": 0.0, "std": 1.0}}}  # fmt: skip
    dataset_json = {"channel_names": {"0": "CT"}, "labels": dict(SPEC.labels), "numTraining": 4,
                    "file_ending": ".nii.gz"}  # fmt: skip
    trainer = nnUNetTrainer(plans, "3d_fullres", 0, dataset_json, torch.device(device))
    trainer.num_epochs, trainer.num_iterations_per_epoch = num_epochs, iterations
    trainer.initialize()
    return trainer


def nnseg_trainer(plan: ConfigurationPlan, store: PreprocessedStore, split: Split, config: TrainerConfig,
                  device: str = "cpu", callbacks: tuple[Callback, ...] = ()) -> Trainer:  # fmt: skip
    """nnseg's trainer with a metrics log (plus ``callbacks``)."""
    return Trainer(plan, store, split, spec=SPEC, config=config, device=device, callbacks=[MetricsLog(), *callbacks])


def seconds_per_step(plan: ConfigurationPlan, store: PreprocessedStore, args: argparse.Namespace,
                     device: str = "cpu") -> dict[str, float]:  # fmt: skip
    """Best-of-``repeats`` mean seconds of one optimiser step on ``device`` for nnseg and (if installed) nnU-Net.

    On CUDA both use AMP (nnseg's default there, as nnU-Net's); each step is synchronised before the clock stops.
    """
    split = Split(store.case_ids(), (), None)
    ours = nnseg_trainer(plan, store, split, TrainerConfig(num_loader_workers=0, final_validation=False), device)
    ours._setup()
    batches = [ours.train_loader.batch(s) for s in range(args.steps)]
    timers: dict[str, Any] = {"nnseg": lambda b: ours.training_step(b)}
    if not args.skip_nnunet:
        try:
            theirs = nnunet_trainer(plan, Path(tempfile.mkdtemp()), 1000, 250, device)
        except ImportError:
            theirs = None
        if theirs is not None:
            theirs.network.load_state_dict(ours.network.state_dict())
            timers["nnunetv2"] = lambda b: theirs.train_step({"data": b.data, "target": list(b.target)})
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = {name: math.inf for name in timers}
    for repeat in range(args.repeats):
        for name in list(timers) if repeat % 2 == 0 else list(reversed(timers)):
            timers[name](batches[0])  # warm-up
            sync()
            start = time.perf_counter()
            for batch in batches:
                timers[name](batch)
            sync()
            best[name] = min(best[name], (time.perf_counter() - start) / len(batches))
    return best


class _Kill(Callback):
    """Stops the run with an exception after epoch ``epoch`` (its checkpoint is written first)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if metrics["epoch"] == self.epoch + 1:  # raised before epoch + 1's checkpoint: resume from epoch's
            raise KeyboardInterrupt


def resume_speed(plan: ConfigurationPlan, store: PreprocessedStore, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per step of the epochs before an interruption and of the first epoch after resuming.

    4 epochs of ``--resume-iterations`` steps: the run stops during epoch 2 (after epoch 1's checkpoint) and a new
    trainer resumes it. A resume that lost settings or warmed up cold would show in ``after_resume``.
    """
    ids = sorted(store.case_ids())
    split = Split(tuple(ids[:-2]), tuple(ids[-2:]), None)
    config = TrainerConfig(iterations_per_epoch=args.resume_iterations, num_epochs=4, val_iterations_per_epoch=0,
                           num_loader_workers=args.workers, final_validation=False)  # fmt: skip
    run = Path(tempfile.mkdtemp()) / "run"
    with contextlib.suppress(KeyboardInterrupt):
        nnseg_trainer(plan, store, split, config, callbacks=(_Kill(1),)).fit(run)
    nnseg_trainer(plan, store, split, config, callbacks=(_Kill(99),)).fit(run)  # the same callbacks to resume
    per_epoch = [json.loads(line)["seconds_per_step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"first_epoch": per_epoch[0], "before_interruption": per_epoch[1], "after_resume": per_epoch[2],
            "later": per_epoch[3]}  # fmt: skip


def score(network: torch.nn.Module, store: PreprocessedStore, plan: ConfigurationPlan, val: tuple[str, ...]) -> float:
    """Mean foreground Dice of sliding-window predictions of ``val`` (preprocessed grid)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = validate_cases(network, store, val, patch_size=plan.patch_size, spec=SPEC, out_dir=Path(tmp),
                                 device=torch.device("cpu"), mirror_axes=None)  # fmt: skip
    return float(summary["mean_dice"])


def dice_after_budget(plan: ConfigurationPlan, store: PreprocessedStore, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``budget`` steps with each trainer, once per seed; Dice and wall time per trainer and seed."""
    runs: dict[str, list[dict[str, float]]] = {}
    for seed in range(args.seeds):
        for name, result in one_budget_run(plan, store, args, seed).items():
            runs.setdefault(name, []).append({"seed": seed, **result})
    results: dict[str, Any] = {}
    for name, per_seed in runs.items():
        dices = [run["dice"] for run in per_seed]
        results[name] = {"dice": statistics.mean(dices), "dice_min": min(dices), "dice_max": max(dices),
                         "seconds": statistics.mean(run["seconds"] for run in per_seed), "runs": per_seed}  # fmt: skip
    return results


def one_budget_run(plan: ConfigurationPlan, store: PreprocessedStore, args: argparse.Namespace,
                   seed: int) -> dict[str, dict[str, float]]:  # fmt: skip
    """One budget run per trainer from the same initial weights (drawn from ``seed``)."""
    ids = sorted(store.case_ids())
    split = Split(tuple(ids[:-2]), tuple(ids[-2:]), None)
    epochs = max(args.budget // args.iterations, 1)
    config = TrainerConfig(iterations_per_epoch=args.iterations, num_epochs=epochs, val_iterations_per_epoch=0,
                           num_loader_workers=args.workers, final_validation=False, seed=seed)  # fmt: skip
    results: dict[str, dict[str, float]] = {}
    ours = nnseg_trainer(plan, store, split, config)
    start = time.perf_counter()
    ours.fit(Path(tempfile.mkdtemp()) / "run")
    results["nnseg"] = {"seconds": time.perf_counter() - start, "dice": score(ours.network, store, plan, split.val)}
    if args.skip_nnunet:
        return results
    try:
        theirs = nnunet_trainer(plan, Path(tempfile.mkdtemp()), epochs, args.iterations)
    except ImportError:
        return results
    theirs.network.load_state_dict(ours.build_network().state_dict())  # same initial weights as nnseg's run
    # nnU-Net samples from the global generators: seed them so its run is repeatable too.
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    generator = nnunet_batches(plan, store, split.train)
    theirs.network.train()
    for epoch in range(epochs):
        theirs.lr_scheduler.step(epoch)
        for _ in range(args.iterations):
            theirs.train_step(next(generator))
    results["nnunetv2"] = {"seconds": time.perf_counter() - start,
                           "dice": score(theirs.network, store, plan, split.val)}  # fmt: skip
    return results


def nnunet_batches(plan: ConfigurationPlan, store: PreprocessedStore, train: tuple[str, ...]) -> Any:
    """nnU-Net's loader and training transforms over the store's training cases, in this process."""
    from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    config = AugmentationConfig.for_plan(plan, SPEC)
    scales = [list(s) for s in config.deep_supervision_scales or ()]
    transforms = nnUNetTrainer.get_training_transforms(
        plan.patch_size, (-math.pi / 6, math.pi / 6), scales, (0, 1, 2), False, use_mask_for_norm=[False],
        is_cascaded=False, foreground_labels=[1, 2], regions=None, ignore_label=None,
    )  # fmt: skip
    dataset = _StoreAsNnunetDataset(store)
    dataset.identifiers = list(train)
    loader = nnUNetDataLoader(dataset, plan.batch_size, config.initial_patch_size(plan.patch_size),  # type: ignore[arg-type]
                              plan.patch_size, LabelManager(dict(SPEC.labels), None),
                              oversample_foreground_percent=0.33, transforms=transforms)  # fmt: skip
    return SingleThreadedAugmenter(loader, None)


def main() -> None:
    """Run both measurements, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="patch 16x32x32, budget 40")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (10; quick 5)")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats, best counts (3; quick 2)")
    parser.add_argument("--budget", type=int, default=None, help="steps for the Dice comparison (200; quick 40)")
    parser.add_argument("--iterations", type=int, default=20, help="steps per epoch in the Dice comparison")
    parser.add_argument("--seeds", type=int, default=1, help="budget runs per trainer (seeds 0..N-1; mean reported)")
    parser.add_argument("--workers", type=int, default=0, help="nnseg loader workers in the Dice comparison")
    parser.add_argument("--resume-iterations", type=int, default=None, help="steps per epoch of the resume check (5)")
    parser.add_argument("--skip-nnunet", action="store_true")
    parser.add_argument("--skip-resume", action="store_true", help="skip the speed-after-resume check")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "training.json")
    args = parser.parse_args()
    patch, shape = ((16, 32, 32), (32, 64, 64)) if args.quick else ((32, 64, 64), (48, 96, 96))
    for name, full, quick in (("budget", 200, 40), ("steps", 10, 5), ("repeats", 3, 2), ("resume_iterations", 5, 5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    plan = make_plan(patch, batch_size=2)
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", plan, 10, shape)
        timing = seconds_per_step(plan, store, args)
        if torch.cuda.is_available():
            timing.update({f"{k} (cuda)": v for k, v in seconds_per_step(plan, store, args, "cuda").items()})
        budget = dice_after_budget(plan, store, args)
        resume = {} if args.skip_resume else resume_speed(plan, store, args)
    report({"timing": timing, "budget": budget, "resume": resume}, plan, args)


def report(results: dict[str, Any], plan: ConfigurationPlan, args: argparse.Namespace) -> None:
    """Print the table and write the JSON."""
    print(f"plan: patch {tuple(plan.patch_size)}, batch {plan.batch_size}, {plan.architecture.num_stages} stages; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'trainer':<10} {'s/step':>8} {'budget':>7} {'seeds':>5} {'Dice':>7} {'min':>7} {'max':>7} {'train s':>8}")
    for name, seconds in results["timing"].items():
        budget = results["budget"].get(name, {})
        print(f"{name:<10} {seconds:8.3f} {args.budget:7d} {len(budget.get('runs', ())):5d} "
              f"{budget.get('dice', math.nan):7.3f} {budget.get('dice_min', math.nan):7.3f} "
              f"{budget.get('dice_max', math.nan):7.3f} {budget.get('seconds', math.nan):8.1f}")  # fmt: skip
    if results["resume"]:
        print(
            "nnseg seconds per step around a resume: " + ", ".join(f"{k} {v:.3f}" for k, v in results["resume"].items())
        )
    payload = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_count": os.cpu_count(), "threads": torch.get_num_threads()},
               "plan": {"patch_size": list(plan.patch_size), "batch_size": plan.batch_size},
               "budget_steps": args.budget, "seeds": args.seeds, **results}  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
