"""Step budget: train for exactly N optimiser steps, choose how often to validate and checkpoint, stop early.

Run it as ``python examples/step_budget.py [WORK_DIR] [--steps N] [--smoke]``.

nnU-Net trains ``250 x 1000`` steps and changing that takes a subclass per number. Here the schedule is
configuration: ``TrainerConfig.from_step_budget(N, iterations_per_epoch=k)`` trains exactly N steps, the
learning rate is a pure function of the step (nnU-Net's poly 0.9 set once per epoch by default, or a
smooth decay every step with ``lr_schedule="per_step"``), and an epoch (k steps) is only the period of validation, logging and
checkpoints. Interrupt it (Ctrl-C) and run it again: it resumes exactly where the last checkpoint was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import nnseg
from nnseg.testing import make_synthetic_dataset
from nnseg.training import EarlyStopping, MetricsLog, ProgressBar, Trainer


def prepare(work: Path, smoke: bool) -> tuple[nnseg.ConfigurationPlan, nnseg.PreprocessedStore, nnseg.DatasetSpec]:
    """Synthetic dataset -> fingerprint -> plans -> preprocessed 3d_fullres store."""
    shape = (8, 16, 16) if smoke else (40, 64, 64)
    raw = make_synthetic_dataset(work / "raw", num_cases=5 if smoke else 10, shape=shape, seed=1)
    dataset = nnseg.RawDataset.from_folder(raw)
    fingerprint = nnseg.extract_fingerprint(dataset, num_workers=1)
    plan = nnseg.Planner().plan(fingerprint, dataset.spec)["3d_fullres"]
    store = nnseg.preprocess_dataset(dataset, plan, work / "preprocessed", num_workers=1, progress=False)
    return plan, store, dataset.spec


def main() -> None:
    """Train a fixed step budget and print what the schedule did."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work_dir", nargs="?", type=Path, default=Path("step_budget_work"))
    parser.add_argument("--steps", type=int, default=1000, help="total optimiser steps (default 1000)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 4 steps, for CI")
    args = parser.parse_args()
    steps, per_epoch = (4, 2) if args.smoke else (args.steps, 100)
    plan, store, spec = prepare(args.work_dir, args.smoke)

    config = nnseg.TrainerConfig.from_step_budget(steps, iterations_per_epoch=per_epoch,
                                                  val_iterations_per_epoch=1 if args.smoke else 10,
                                                  num_loader_workers=0 if args.smoke else 2)  # fmt: skip
    # any other number is a dataclasses.replace away: no subclass
    config = dataclasses.replace(config, checkpoint_every_epochs=1, final_validation=not args.smoke)
    print(f"{config.total_steps} steps = {config.num_epochs} epochs x {config.iterations_per_epoch}")
    print("learning rate at steps 0, N/2, N-1:",
          [round(config.learning_rate(s), 6) for s in (0, steps // 2, steps - 1)])  # fmt: skip

    callbacks = [MetricsLog(), ProgressBar(disable=args.smoke), EarlyStopping(patience=5)]
    trainer = Trainer(plan, store, nnseg.Split.kfold(store.case_ids(), fold=0), spec=spec, config=config,
                      callbacks=callbacks)  # fmt: skip
    run_dir = args.work_dir / "runs" / f"budget_{steps}" / "fold_0"
    final = trainer.fit(run_dir)
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        print(f"epoch {m['epoch']:>3}  step {m['step']:>5}  loss {m['train_loss']:+.4f}  "
              f"pseudo-Dice EMA {m['ema_pseudo_dice']:.4f}  {m['seconds_per_step']:.2f} s/step")  # fmt: skip
    print("final checkpoint:", final)


if __name__ == "__main__":
    main()
