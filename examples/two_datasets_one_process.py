"""Two datasets in one Python process: fingerprint, plan, preprocess (and train) both, with nothing shared.

nnU-Net keeps its folders in three process-wide environment variables, so two datasets in one process step
on each other. nnseg has no global state: each dataset gets its own work folder (a ``Workspace``), and every
path, device, worker count and seed is an argument. This script runs two different synthetic datasets (a
CT-like one with three labels, an MR-like one with two channels) through the pipeline stage by stage,
interleaved, and checks that the two work folders hold exactly their own dataset's results.

Run it as ``python examples/two_datasets_one_process.py [OUT_DIR] [--smoke] [--device cuda:0]``.
Training runs when ``nnseg.training.Trainer`` is available in your nnseg version (``--no-train`` skips it).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint
from nnseg.planning import Planner, Plans
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset, store_name
from nnseg.testing import make_synthetic_dataset
from nnseg.workspace import Workspace

CONFIGURATION = "3d_fullres"


@dataclass
class Project:
    """One dataset and its work folder, carried through the stages."""

    dataset: RawDataset
    workspace: Workspace
    plans: Plans | None = None
    store: PreprocessedStore | None = None


def make_datasets(out_dir: Path, smoke: bool) -> list[RawDataset]:
    """Two different synthetic raw datasets in nnU-Net's layout."""
    shape = (16, 32, 32) if smoke else (40, 64, 64)
    num_cases = 5 if smoke else 12
    ct = make_synthetic_dataset(out_dir / "raw", num_cases=num_cases, shape=shape, modality="ct", num_classes=3,
                                seed=0, dataset_name="Dataset001_CT")  # fmt: skip
    mr = make_synthetic_dataset(out_dir / "raw", num_cases=num_cases, shape=shape, spacing=(3.0, 1.0, 1.0),
                                modality="mr", num_channels=2, num_classes=2, seed=1, dataset_name="Dataset002_MR")  # fmt: skip
    return [RawDataset.from_folder(ct), RawDataset.from_folder(mr)]


def fingerprint_and_plan(project: Project, *, smoke: bool) -> None:
    """Fingerprint the dataset (resumable cache inside its own work folder) and plan it."""
    ws, ds = project.workspace, project.dataset
    ws.initialise(ds.root or ws.root)
    ds.spec.save(ws.dataset_json_path)
    # smoke: fewer intensity samples (faster; the statistics then differ slightly from nnU-Net's)
    fingerprint = extract_fingerprint(ds, num_workers=1, cache_dir=ws.fingerprint_cache_dir,
                                      num_samples=10_000 if smoke else None)  # fmt: skip
    fingerprint.save(ws.fingerprint_path)
    project.plans = Planner().plan(fingerprint, ds.spec, dataset_name=ds.root.name if ds.root else None)
    project.plans.save(ws.plans_path(project.plans.plans_name))
    plan = project.plans[CONFIGURATION]
    print(f"{ds.spec.extra.get('name', ws.root.name)}: {len(ds)} cases, {ds.spec.num_channels} channel(s); "
          f"{CONFIGURATION} patch {plan.patch_size}, batch {plan.batch_size}, spacing {plan.spacing}")  # fmt: skip


def preprocess(project: Project) -> None:
    """Preprocess the training cases into a store inside the project's work folder."""
    if project.plans is None:  # invariant: planned first
        raise RuntimeError("plan before preprocessing")
    plan = project.plans[CONFIGURATION]
    folder = project.workspace.preprocessed_dir(store_name(plan, project.dataset.spec))
    project.store = preprocess_dataset(project.dataset, plan, folder, num_workers=1, progress=False)
    print(f"{project.workspace.root.name}: {project.store.status(project.dataset.case_ids).summary()} in {folder}")


def train(project: Project, *, smoke: bool, device: str) -> Path | None:
    """Train fold 0 if this nnseg has a Trainer; return the final checkpoint (None when training is absent)."""
    try:
        from nnseg.training import Split, Trainer, TrainerConfig  # type: ignore[attr-defined]
    except ImportError:
        try:
            from nnseg.training import (
                Split,
                Trainer,  # type: ignore[attr-defined]
                TrainerConfig,
            )
        except ImportError:
            print("nnseg.training.Trainer is not available in this version; skipping training")
            return None
    if project.plans is None or project.store is None:  # invariant: preprocessed first
        raise RuntimeError("preprocess before training")
    plan = project.plans[CONFIGURATION]
    config = (
        TrainerConfig(
            iterations_per_epoch=1,
            num_epochs=1,
            val_iterations_per_epoch=0,
            num_loader_workers=0,
            final_validation=False,
        )  # fmt: skip
        if smoke
        else TrainerConfig.from_step_budget(500, iterations_per_epoch=50, num_loader_workers=2)
    )
    split = Split.kfold(project.dataset.case_ids, 0)
    run_dir = project.workspace.run_dir(project.plans.plans_name, CONFIGURATION, "nnseg", 0)
    trainer = Trainer(plan, project.store, split, spec=project.dataset.spec, config=config, device=device)
    final: Path = trainer.fit(run_dir)
    print(f"{project.workspace.root.name}: trained {config.total_steps} steps -> {final}")
    return final


def check_independent(projects: list[Project]) -> dict[str, Any]:
    """Each work folder records its own raw dataset, labels and plans: nothing leaked from one to the other."""
    summary = {}
    for project in projects:
        ws = project.workspace
        recorded = json.loads(ws.dataset_json_path.read_text())
        if ws.raw_dataset_dir() != project.dataset.root or recorded["labels"] != json.loads(
            (project.dataset.root / "dataset.json").read_text())["labels"]:  # fmt: skip
            raise RuntimeError(f"{ws.root} does not describe {project.dataset.root}")
        summary[ws.root.name] = {"dataset": ws.raw_dataset_dir().name, "labels": recorded["labels"],
                                 "plans": sorted(p.name for p in (ws.root / "plans").glob("*.json"))}  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run both datasets through the pipeline, stage by stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path("two_datasets_work"))
    parser.add_argument("--smoke", action="store_true", help="tiny images and a few training steps (for CI)")
    parser.add_argument("--device", default="cpu", help="training device, e.g. cuda:0 (default cpu)")
    parser.add_argument("--no-train", action="store_true", help="stop after preprocessing")
    args = parser.parse_args(argv)

    datasets = make_datasets(args.out_dir, args.smoke)
    projects = [Project(ds, Workspace(args.out_dir / "work" / ds.root.name)) for ds in datasets if ds.root]
    for project in projects:
        fingerprint_and_plan(project, smoke=args.smoke)
    for project in projects:
        preprocess(project)
    if not args.no_train:
        for project in projects:
            train(project, smoke=args.smoke, device=args.device)
    print(json.dumps(check_independent(projects), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
