"""Custom trainer: swap the loss by passing it in, or the network by overriding one ``build_*`` hook.

Run it as ``python examples/custom_trainer.py [WORK_DIR] [--smoke]``. It generates the embedded synthetic
dataset, plans and preprocesses it, then trains fold 0 twice:

1. composition: the default network with a loss passed in (cross-entropy weighted twice as much as Dice);
2. a subclass that overrides ``build_network`` to train a slimmer U-Net (half the features per stage).

Nothing else changes: the schedule, checkpoints, exact resume and validation come with the Trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from torch import nn

import nnseg
from nnseg.network import build_network
from nnseg.testing import make_synthetic_dataset
from nnseg.training import DeepSupervisionLoss, DiceCELoss, Trainer, deep_supervision_scales, deep_supervision_weights


def prepare(work: Path, smoke: bool) -> tuple[nnseg.ConfigurationPlan, nnseg.PreprocessedStore, nnseg.DatasetSpec]:
    """Synthetic dataset -> fingerprint -> plans -> preprocessed 3d_fullres store."""
    shape = (8, 16, 16) if smoke else (40, 64, 64)
    raw = make_synthetic_dataset(work / "raw", num_cases=5 if smoke else 10, shape=shape, seed=0)
    dataset = nnseg.RawDataset.from_folder(raw)
    fingerprint = nnseg.extract_fingerprint(dataset, num_workers=1)
    plan = nnseg.Planner().plan(fingerprint, dataset.spec)["3d_fullres"]
    store = nnseg.preprocess_dataset(dataset, plan, work / "preprocessed", num_workers=1, progress=False)
    return plan, store, dataset.spec


class SlimTrainer(Trainer):
    """The plan's U-Net with half the features per stage: one hook overridden, everything else inherited."""

    def build_network(self) -> nn.Module:
        """Build the planned topology with halved widths (deep supervision as configured)."""
        architecture = self.plan.architecture
        kwargs = architecture.plain_arch_kwargs()
        kwargs["features_per_stage"] = [max(f // 2, 1) for f in kwargs["features_per_stage"]]
        slim = dataclasses.replace(architecture, arch_kwargs=kwargs)
        return build_network(slim, num_input_channels=self.spec.num_channels,
                             num_outputs=self.spec.num_segmentation_heads,
                             deep_supervision=self.config.deep_supervision)  # fmt: skip


def main() -> None:
    """Train with a loss passed in, then with a subclass."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("work_dir", nargs="?", type=Path, default=Path("custom_trainer_work"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 2 steps, for CI")
    args = parser.parse_args()
    plan, store, spec = prepare(args.work_dir, args.smoke)
    split = nnseg.Split.kfold(store.case_ids(), fold=0)
    config = nnseg.TrainerConfig.from_step_budget(
        2 if args.smoke else 500, iterations_per_epoch=2 if args.smoke else 50,
        val_iterations_per_epoch=1 if args.smoke else 10, num_loader_workers=0 if args.smoke else 2,
        final_validation=not args.smoke,
    )  # fmt: skip

    # 1. composition: pass a loss in (it receives the list of deep-supervision outputs and targets)
    weights = deep_supervision_weights(len(deep_supervision_scales(plan)))
    loss = DeepSupervisionLoss(DiceCELoss(batch_dice=plan.batch_dice, weight_ce=2.0), weights)
    trainer = Trainer(plan, store, split, spec=spec, config=config, loss=loss)
    print("loss passed in:", trainer.fit(args.work_dir / "runs" / "weighted_ce" / "fold_0"))

    # 2. subclass: override one hook
    slim = SlimTrainer(plan, store, split, spec=spec, config=config)
    print("slim network:  ", slim.fit(args.work_dir / "runs" / "slim" / "fold_0"))
    parameters = sum(p.numel() for p in slim.network.parameters())
    print(f"slim network has {parameters} parameters")


if __name__ == "__main__":
    main()
