"""Quickstart: from a raw nnU-Net dataset folder to a trained model and a Dice table, in plain Python.

Run it as ``python examples/quickstart.py [WORK_DIR]``. Without a dataset of your own it generates the
embedded synthetic one (with held-out test cases in imagesTs/labelsTs). ``--smoke`` uses tiny sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nnseg
import nnseg.preprocessing
from nnseg.inference import InferenceSettings
from nnseg.testing import make_synthetic_dataset


def main() -> None:
    """Generate a dataset, check it, fingerprint it and plan it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work_dir", nargs="?", type=Path, default=Path("quickstart_work"))
    parser.add_argument("--raw", type=Path, default=None, help="an nnU-Net raw dataset folder of your own")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (the planned network wants a GPU)")
    parser.add_argument("--steps", type=int, default=250, help="training steps (a real run: 250 x 1000)")
    args = parser.parse_args()

    raw_dir = args.raw
    if raw_dir is None:
        shape = (16, 32, 32) if args.smoke else (40, 64, 64)
        raw_dir = make_synthetic_dataset(
            args.work_dir / "raw",
            num_cases=4 if args.smoke else 10,
            num_test_cases=2,
            shape=shape,
            spacing=(2.5, 0.8, 0.8),
            seed=0,
        )

    dataset = nnseg.RawDataset.from_folder(raw_dir)  # layout checks run here
    dataset.verify(num_workers=2).raise_for_errors()  # full integrity check, every problem at once

    fingerprint = nnseg.extract_fingerprint(dataset, num_workers=2, cache_dir=args.work_dir / "fingerprint_cache")
    fingerprint.save(args.work_dir / "fingerprint.json")

    plans = nnseg.Planner().plan(fingerprint, dataset.spec)  # nnU-Net's default planner
    plans.save(args.work_dir / "plans" / f"{plans.plans_name}.json")
    resenc = nnseg.ResEncLPlanner(gpu_memory_gb=24).plan(fingerprint, dataset.spec)

    for name in plans.configuration_names:
        default, large = plans[name], resenc[name] if name in resenc.configuration_names else None
        line = f"{name:<20} default: patch {tuple(default.patch_size)} batch {default.batch_size}"
        if large is not None:
            line += f" | ResEnc-L 24 GB: patch {tuple(large.patch_size)} batch {large.batch_size}"
        print(line)

    plan = plans["3d_fullres"]
    store_dir = args.work_dir / "preprocessed" / nnseg.preprocessing.store_name(plan, dataset.spec)
    store = nnseg.preprocess_dataset(dataset, plan, store_dir, num_workers=2)  # resumes; shard=nnseg.Shard(k, n)

    config = nnseg.TrainerConfig.from_step_budget(4 if args.smoke else args.steps, iterations_per_epoch=50,
                                                  num_loader_workers=1, final_validation=False)  # fmt: skip
    split = nnseg.Split.kfold(store.case_ids(), "all")  # or fold 0..4, nnU-Net's folds
    run_dir = args.work_dir / "runs" / "fold_all"
    nnseg.Trainer(plan, store, split, spec=dataset.spec, config=config, device=args.device).fit(run_dir)

    settings = InferenceSettings(device=args.device, use_mirroring=not args.smoke)  # tile step, TTA, blending...
    predictor = nnseg.Predictor.from_run(run_dir, settings=settings)
    predictor.predict_folder(raw_dir / "imagesTs", args.work_dir / "predictions")
    summary = nnseg.evaluate_folder(args.work_dir / "predictions", raw_dir / "labelsTs", dataset.spec)
    print({label: round(metrics["Dice"], 3) for label, metrics in summary.mean.items()})


if __name__ == "__main__":
    main()
