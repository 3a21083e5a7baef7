"""``nnseg find-best WORK -c 2d 3d_fullres [...]``: choose the final model on cross-validation, as nnU-Net does.

Accumulates each configuration's cross-validation, ensembles every pair (probability space) unless
``--no-ensembles``, ranks by foreground-mean Dice, determines postprocessing on the winner and writes
``WORK/best.json``, ``WORK/postprocessing.json`` and ``WORK/inference_instructions.txt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_find_best"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``find-best`` subcommand."""
    parser = subparsers.add_parser(
        "find-best", help="rank configurations and their ensembles on cross-validation; pick the best",
        description="Gather each configuration's cross-validation, evaluate every pair's ensemble, pick the highest "
                    "foreground-mean Dice (ties: the first in -c order, singles before pairs), determine "
                    "postprocessing on it, and write best.json and inference_instructions.txt into WORK. Reruns "
                    "reuse what is done.",
    )  # fmt: skip
    parser.add_argument("work", type=Path, metavar="WORK", help="the work folder")
    parser.add_argument("-c", "--configurations", nargs="+", required=True, metavar="CONFIG",
                        help="configurations to compare, e.g. 2d 3d_fullres")  # fmt: skip
    parser.add_argument("-f", "--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], metavar="FOLD",
                        help="folds (default 0 1 2 3 4)")  # fmt: skip
    parser.add_argument("--no-ensembles", action="store_true", help="do not evaluate pairwise ensembles")
    parser.add_argument("--plans", default="nnUNetPlans", metavar="PLANS_NAME", help="default nnUNetPlans")
    parser.add_argument("--run-name", default="nnseg", help="run folder suffix (default nnseg)")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="evaluation processes (1)")
    parser.set_defaults(handler=run_find_best)


def run_find_best(args: argparse.Namespace) -> int:
    """Choose, print the ranked table, write the files; return the exit code."""
    from nnseg.selection import find_best

    best = find_best(args.work, args.configurations, folds=args.folds, ensembles=not args.no_ensembles,
                     plans_name=args.plans, run_name=args.run_name, num_workers=args.num_workers)  # fmt: skip
    print("\n".join(best.table()))
    steps = len(best.postprocessing.steps)
    print(f"winner: {best.winner.name}; postprocessing: {steps} step(s) in {best.postprocessing_file}")
    print(f"written: {args.work / 'best.json'}, {args.work / 'inference_instructions.txt'}")
    return 0
