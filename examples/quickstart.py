"""Quickstart: from a raw nnU-Net dataset folder to plans, in plain Python.

Run it as ``python examples/quickstart.py [WORK_DIR]``. Without a dataset of your own it generates the
embedded synthetic one. Later stages (preprocess, train, predict) are added here as they land.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nnseg
from nnseg.testing import make_synthetic_dataset


def main() -> None:
    """Generate a dataset, check it, fingerprint it and plan it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work_dir", nargs="?", type=Path, default=Path("quickstart_work"))
    parser.add_argument("--raw", type=Path, default=None, help="an nnU-Net raw dataset folder of your own")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    args = parser.parse_args()

    raw_dir = args.raw
    if raw_dir is None:
        shape = (16, 32, 32) if args.smoke else (40, 64, 64)
        raw_dir = make_synthetic_dataset(
            args.work_dir / "raw", num_cases=4 if args.smoke else 10, shape=shape, spacing=(2.5, 0.8, 0.8), seed=0
        )

    dataset = nnseg.RawDataset.from_folder(raw_dir)            # layout checks run here
    dataset.verify(num_workers=2).raise_for_errors()           # full integrity check, every problem at once

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


if __name__ == "__main__":
    main()
