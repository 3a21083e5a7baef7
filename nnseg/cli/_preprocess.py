"""``nnseg preprocess WORK -c CONFIG``: preprocess a work folder's raw dataset into a resumable store.

Reads ``WORK/workspace.json`` (the raw dataset) and ``WORK/plans/<plans_name>.json``, and writes
``WORK/preprocessed/<configuration>_<hash>/`` (see :func:`nnseg.preprocessing.store_name`): plans whose
preprocessing is identical share the folder, an edited plan gets a new one. A killed run resumes where it
stopped; ``--num-parts N --part-id K`` does one share of the cases; ``--status`` only reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnseg._checks import parse_int

__all__ = ["register", "run_preprocess"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``preprocess`` subcommand."""
    parser = subparsers.add_parser(
        "preprocess",
        help="preprocess the training cases of one configuration (resumable, shardable)",
        description=(
            "Crop, normalise and resample every training case of WORK's raw dataset for one configuration of "
            "WORK/plans/<plans>.json into WORK/preprocessed/<configuration>_<hash>/. Complete cases are kept "
            "and skipped, partial ones (a killed run) are redone. Run `nnseg plan WORK` first."
        ),
    )
    parser.add_argument("work", type=Path, metavar="WORK", help="the work folder (see `nnseg fingerprint`)")
    parser.add_argument("-c", "--configuration", required=True, metavar="CONFIG", help="e.g. 3d_fullres or 2d")
    parser.add_argument("--plans", default="nnUNetPlans", metavar="PLANS_NAME",
                        help="plans name: reads WORK/plans/PLANS_NAME.json (default nnUNetPlans)")  # fmt: skip
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N parts")
    parser.add_argument("--part-id", type=int, default=0, metavar="K", help="preprocess part K only (0-based)")
    parser.add_argument("--status", action="store_true", help="report done / missing / stale cases, change nothing")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo the cases of this part even if complete (and accept a store of other preprocessing)")  # fmt: skip
    parser.set_defaults(handler=run_preprocess)


def run_preprocess(args: argparse.Namespace) -> int:
    """Preprocess (or report on) one configuration; return the exit code (1: cases failed or incomplete)."""
    from nnseg.dataset import RawDataset
    from nnseg.errors import PreprocessingError
    from nnseg.planning import Plans
    from nnseg.preprocessing import PreprocessedStore, preprocess_dataset, store_name
    from nnseg.sharding import Shard
    from nnseg.workspace import Workspace

    parse_int("nnseg preprocess", "--num-workers", args.num_workers, minimum=1)
    shard = Shard(args.part_id, args.num_parts)
    workspace = Workspace(args.work)
    dataset = RawDataset.from_folder(workspace.raw_dataset_dir())
    plan = Plans.load(workspace.plans_path(args.plans))[args.configuration]
    store_dir = workspace.preprocessed_dir(store_name(plan, dataset.spec))
    owned = shard.select(dataset.case_ids)
    if args.status:
        status = PreprocessedStore(store_dir).status(owned)
        print(f"{store_dir}: {status.summary()} of {len(owned)} case(s){'' if shard.is_whole else f' ({shard})'}")
        for label, ids in (("missing", status.missing), ("stale", status.stale)):
            if ids:
                print(f"{label}: {', '.join(ids)}")
        return 0 if status.is_complete else 1
    try:
        preprocess_dataset(dataset, plan, store_dir, num_workers=args.num_workers, shard=shard,
                           overwrite=args.overwrite, progress=sys.stderr.isatty())  # fmt: skip
    except PreprocessingError as err:
        print(f"nnseg preprocess: {err}", file=sys.stderr)
        return 1
    print(f"{len(owned)} case(s) of {args.configuration!r} complete in {store_dir}")
    if not shard.is_whole:
        print(f"part {args.part_id} of {args.num_parts} done; run every part (same store folder) before training")
    return 0
