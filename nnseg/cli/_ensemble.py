"""``nnseg ensemble -i PRED_A PRED_B [...] -o OUT``: average saved probabilities of several prediction folders.

Members are folders written with ``--save-probabilities`` (``<case>.npz`` + ``<case>.json``). The labels come
from ``-d dataset.json`` or the first member's / its parent's ``dataset.json``. ``--num-parts/--part-id``
split the cases as ``nnseg predict`` does; finished cases are skipped on rerun.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnseg.cli._postprocess import find_dataset_json

__all__ = ["register", "run_ensemble"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``ensemble`` subcommand."""
    parser = subparsers.add_parser(
        "ensemble", help="average the probabilities of several prediction folders (configuration ensemble)",
        description="Average <case>.npz probabilities over the folders given with -i, case by case, and write "
                    "label maps with the source geometry into OUT (probability space, as nnU-Net ensembles "
                    "configurations). Sharded with --num-parts/--part-id; rerun to continue.",
    )  # fmt: skip
    parser.add_argument("-i", "--input", type=Path, nargs="+", required=True, metavar="PRED",
                        help="two or more prediction folders with <case>.npz and <case>.json")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("-d", "--dataset-json", type=Path, default=None, metavar="JSON",
                        help="dataset.json (default: in the first member, or its parent folder)")  # fmt: skip
    parser.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N parts")
    parser.add_argument("--part-id", type=int, default=0, metavar="K", help="process part K only (0-based)")
    parser.add_argument("--save-probabilities", action="store_true", help="also write the averaged <case>.npz")
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose outputs exist")
    parser.set_defaults(handler=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> int:
    """Ensemble one part; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.inference._ensemble import ensemble_folders
    from nnseg.sharding import Shard

    shard = Shard(args.part_id, args.num_parts)
    first = args.input[0]
    spec = DatasetSpec.load(find_dataset_json(args.dataset_json, first, first.parent))
    written = ensemble_folders(args.input, args.output, spec, shard=shard, save_probabilities=args.save_probabilities,
                               overwrite=args.overwrite)  # fmt: skip
    print(f"{shard}: {len(written)} case(s) ensembled from {len(args.input)} folders into {args.output}")
    return 0
