"""``nnseg cascade-inputs WORK -c 3d_lowres``: which cases have a previous-stage segmentation, from which fold.

The final validation of each ``3d_lowres`` fold writes its validation cases' segmentations on the next stage's
grid (``WORK/preprocessed/<store>/next_stage/<plans>__3d_lowres__<run>/``); the cascade needs one for every
case. Exit code 0 when every case has one, 1 when some are missing (listed with the folds to validate).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["register", "run_cascade_inputs"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``cascade-inputs`` subcommand."""
    parser = subparsers.add_parser(
        "cascade-inputs",
        help="report the previous-stage segmentations the cascade needs (per case: which fold wrote it)",
        description=("Report which cases have a previous-stage segmentation from the 3d_lowres run (and from which "
                     "fold) and which are missing. Exit code 0 when complete, 1 when some are missing."),
    )  # fmt: skip
    parser.add_argument("work", type=Path, metavar="WORK", help="the work folder")
    parser.add_argument("-c", "--configuration", default="3d_lowres", metavar="CONFIG",
                        help="the configuration with a next stage (default 3d_lowres)")  # fmt: skip
    parser.add_argument("--plans", default="nnUNetPlans", metavar="PLANS_NAME", help="default nnUNetPlans")
    parser.add_argument("--run-name", default="nnseg", help="the lowres run's name (default nnseg)")
    parser.set_defaults(handler=run_cascade_inputs)


def run_cascade_inputs(args: argparse.Namespace) -> int:
    """Print the report; return 0 (complete) or 1 (missing cases)."""
    from nnseg.dataset import DatasetSpec
    from nnseg.planning import Plans
    from nnseg.preprocessing import PreprocessedStore, store_name
    from nnseg.training._cascade import lowres_run_name
    from nnseg.training._next_stage import PreviousStageSegmentations
    from nnseg.workspace import Workspace

    workspace = Workspace(args.work)
    plans = Plans.load(workspace.plans_path(args.plans))
    plan = plans[args.configuration]
    if not plan.next_stages:
        raise ConfigError(
            f"configuration {args.configuration!r} of plans {args.plans!r} has no next stage, so it writes no "
            "previous-stage segmentations; give the cascade's previous stage (e.g. -c 3d_lowres)."
        )
    spec = DatasetSpec.load(workspace.dataset_json_path)
    store = PreprocessedStore(workspace.preprocessed_dir(store_name(plans[plan.next_stages[0]], spec)))
    if store.manifest() is None:
        raise ConfigError(f"no preprocessed store of {plan.next_stages[0]!r} at {store.root}; run `nnseg preprocess "
                          f"{args.work} -c {plan.next_stages[0]} --plans {args.plans}` first.")  # fmt: skip
    segs = PreviousStageSegmentations.of(store.root, lowres_run_name(args.plans, plan.name, args.run_name))
    by_fold: dict[str, list[str]] = defaultdict(list)
    missing = []
    for case_id, record in segs.status(store.case_ids()).items():
        if record is None:
            missing.append(case_id)
        else:
            by_fold[str(record.get("fold"))].append(case_id)
    print(f"{segs.folder}: {sum(map(len, by_fold.values()))} of {len(store.case_ids())} case(s) have one")
    for fold in sorted(by_fold):
        print(f"fold {fold}: {', '.join(by_fold[fold])}")
    if missing:
        print(f"missing: {', '.join(missing)}")
        print(
            f"make them: nnseg train {args.work} -c {plan.name} -f K --plans {args.plans} --run-name {args.run_name} "
            "for every fold K (or --val-only for a finished fold, after `nnseg preprocess` of the next stage)"
        )
        return 1
    return 0
