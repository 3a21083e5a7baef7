"""``nnseg demo WORK``: the whole pipeline on the embedded synthetic dataset.

Each stage that exists is run in order and says where its output went. Stages that later issues add
(preprocess, train, predict, evaluate) plug in here as they land.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnseg._atomic import atomic_write_json
from nnseg.workspace import Workspace

__all__ = ["register"]

DEMO_DATASET = "Dataset001_SyntheticCT"
CONFIGURATION = "3d_fullres"
DEFAULT_STEPS = 200
LESION_SCALE = 1.8
"""The demo's lesion is 1.8 times the generator's default size, so a small CPU budget learns it too."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the pipeline on a generated synthetic dataset",
        description="Generate a synthetic CT-like dataset and run every available stage on it.",
    )
    parser.add_argument("work_dir", type=Path, help="folder for the raw dataset and the work folder")
    parser.add_argument("--num-cases", type=int, default=12, help="training cases to generate (default 12)")
    parser.add_argument("--num-workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")
    parser.add_argument("--small", action="store_true", help="tiny images and budgets (a smoke test in seconds)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help=f"training steps (default {DEFAULT_STEPS}; 4 with --small)")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="training and prediction device (default cpu)")
    parser.add_argument("--base-features", type=int, default=16, metavar="N",
                        help="features of the first network stage, doubled per stage (default 16, so the demo trains "
                             "in minutes on a CPU; 0 keeps the plan's 32)")  # fmt: skip
    parser.set_defaults(handler=run_demo)


def _step(title: str, action: Callable[[], str], timings: dict[str, float] | None = None) -> None:
    print(f"==> {title}", flush=True)
    start = time.perf_counter()
    where = action()
    seconds = time.perf_counter() - start
    if timings is not None:
        timings[title.split(" (")[0]] = round(seconds, 2)
    print(f"    done in {seconds:.1f} s: {where}", flush=True)


def run_demo(args: argparse.Namespace) -> int:
    """Run every stage in order, each saying where its output went; return the exit code."""
    demo = _Demo(args)
    steps = args.steps if args.steps is not None else (4 if args.small else DEFAULT_STEPS)
    _step("generate the synthetic dataset", demo.synthesise, demo.timings)
    _step("verify the dataset", demo.verify, demo.timings)
    _step("extract the fingerprint", demo.fingerprint, demo.timings)
    _step("plan (default nnU-Net planner)", demo.plan, demo.timings)
    _step(f"preprocess ({CONFIGURATION}; resumes if interrupted)", demo.preprocess, demo.timings)
    _step(f"train {CONFIGURATION} for {steps} steps (fold 'all'; resumes exactly if interrupted)",
          lambda: demo.train(steps), demo.timings)  # fmt: skip
    _step("predict the held-out test cases (imagesTs)", demo.predict, demo.timings)
    _step("evaluate against labelsTs", demo.evaluate, demo.timings)
    atomic_write_json(demo.workspace.root / "timings.json", demo.timings)
    _step("write the report (open it in a browser)", demo.report)
    print(f"All outputs are under {demo.root.resolve()}; the report is {(demo.root / 'report.html').resolve()}")
    return 0


class _Demo:
    """The demo's stages; each returns where its output went (what the demo prints)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.root = args, Path(args.work_dir)
        self.raw_dir = self.root / "raw" / DEMO_DATASET
        self.workspace = Workspace(self.root / "work")
        self.timings: dict[str, float] = {}
        self.state: dict[str, Any] = {}

    @property
    def run_dir(self) -> Path:
        """The demo's run folder (fold 'all')."""
        return self.workspace.run_dir(self.state["plans"].plans_name, CONFIGURATION, "demo", "all")

    def synthesise(self) -> str:
        from nnseg.testing import make_synthetic_dataset

        if not (self.raw_dir / "dataset.json").is_file():
            make_synthetic_dataset(
                self.root / "raw", num_cases=self.args.num_cases, num_test_cases=4,
                shape=(16, 32, 32) if self.args.small else (32, 48, 48), spacing=(2.5, 0.8, 0.8), modality="ct",
                num_classes=3, seed=self.args.seed, dataset_name=DEMO_DATASET, lesion_scale=LESION_SCALE,
            )  # fmt: skip
        return str(self.raw_dir)

    def verify(self) -> str:
        from nnseg.dataset import RawDataset

        dataset = RawDataset.from_folder(self.raw_dir)
        report = dataset.verify(num_workers=self.args.num_workers)
        report.raise_for_errors()
        self.state["dataset"] = dataset
        return f"{len(dataset)} training cases, {len(report.warnings)} warnings, no errors"

    def fingerprint(self) -> str:
        from nnseg.fingerprint import extract_fingerprint

        dataset = self.state["dataset"]
        self.workspace.initialise(self.raw_dir)
        dataset.spec.save(self.workspace.dataset_json_path)
        fp = extract_fingerprint(dataset, num_workers=self.args.num_workers,
                                 cache_dir=self.workspace.fingerprint_cache_dir)  # fmt: skip
        fp.save(self.workspace.fingerprint_path)
        self.state["fingerprint"] = fp
        return str(self.workspace.fingerprint_path)

    def plan(self) -> str:
        from nnseg.cli._plan import format_plan_table, memory_warnings
        from nnseg.planning import Planner, attach_memory_reports

        spec = self.state["dataset"].spec
        plans = attach_memory_reports(Planner().plan(self.state["fingerprint"], spec), spec)
        path = self.workspace.plans_path(plans.plans_name)
        plans.save(path)
        for line in [*format_plan_table(plans).splitlines(), *memory_warnings(plans)]:
            print(f"    {line}")
        self.state["plans"] = plans
        return str(path)

    def preprocess(self) -> str:
        from nnseg.preprocessing import preprocess_dataset, store_name

        dataset, plan = self.state["dataset"], self.state["plans"][CONFIGURATION]
        store_dir = self.workspace.preprocessed_dir(store_name(plan, dataset.spec))
        store = preprocess_dataset(dataset, plan, store_dir, num_workers=self.args.num_workers, progress=False)
        self.state["store"] = store
        return f"{len(store.case_ids())} cases in {store_dir}"

    def train(self, steps: int) -> str:
        from nnseg.training import Split, Trainer, TrainerConfig

        config = TrainerConfig.from_step_budget(
            steps, iterations_per_epoch=min(50, steps), val_iterations_per_epoch=2, num_loader_workers=1,
            final_validation=False, seed=self.args.seed,
        )  # fmt: skip
        store = self.state["store"]
        plan = _slim(self.state["plans"][CONFIGURATION], self.args.base_features)
        trainer = Trainer(plan, store, Split.kfold(store.case_ids(), "all"), spec=self.state["dataset"].spec,
                          config=config, device=self.args.device)  # fmt: skip
        with warnings.catch_warnings():
            # the planned patch is padded up to what the pooling needs, so it exceeds these small images
            warnings.filterwarnings("ignore", message=".*smaller than the patch")
            return str(trainer.fit(self.run_dir))

    def predict(self) -> str:
        from nnseg.inference import InferenceSettings, Predictor

        settings = InferenceSettings(device=self.args.device, use_mirroring=False)
        status = Predictor.from_run(self.run_dir, settings=settings).predict_folder(
            self.raw_dir / "imagesTs", self.root / "predictions", progress=False)  # fmt: skip
        return f"complete={status.is_complete}: {self.root / 'predictions'}"

    def evaluate(self) -> str:
        from nnseg.evaluation import evaluate_folder

        spec = self.state["dataset"].spec
        summary = evaluate_folder(self.root / "predictions", self.raw_dir / "labelsTs", spec)
        summary.save(self.root / "predictions" / "summary.json")
        names = {str(v): k for k, v in spec.labels.items()}
        for line in _dice_table(summary, names):
            print(f"    {line}")
        return str(self.root / "predictions" / "summary.json")

    def report(self) -> str:
        from nnseg.presentation import write_report

        summary = self.root / "predictions" / "summary.json"
        evaluations = [("test cases (imagesTs)", summary)]
        return str(write_report(self.workspace.root, self.root / "report.html", evaluations=evaluations))


def _dice_table(summary: Any, names: dict[str, str]) -> list[str]:
    """Rows ``label  Dice  IoU`` of an evaluation summary, plus the foreground mean."""
    lines = ["label            Dice     IoU", "---------------  -------  -------"]
    for label, metrics in summary.mean.items():
        name = f"{label} {names.get(label, '')}".strip()
        lines.append(f"{name:<15}  {metrics['Dice']:.4f}   {metrics['IoU']:.4f}")
    lines.append(f"{'foreground mean':<15}  {summary.mean_dice:.4f}")
    return lines


def _slim(plan: Any, base_features: int) -> Any:
    """The plan with ``base_features * 2**stage`` features per stage (capped as planned); 0 keeps it as is.

    Only the network changes: preprocessing, patch and batch stay the planner's, so the store is shared.
    """
    if base_features <= 0:
        return plan
    kwargs = plan.architecture.arch_kwargs
    planned = list(kwargs["features_per_stage"])
    features = [min(base_features * 2**i, planned[i]) for i in range(len(planned))]
    architecture = dataclasses.replace(plan.architecture, arch_kwargs={**kwargs, "features_per_stage": features})
    return dataclasses.replace(plan, architecture=architecture)
