"""``nnseg fingerprint RAW_DIR -o WORK``: compute a dataset's fingerprint into a work folder.

Writes ``WORK/workspace.json`` (which raw dataset the folder belongs to), ``WORK/dataset.json`` and
``WORK/fingerprint.json``. Per-case results go to ``WORK/fingerprint_cache/`` as they finish, so a killed
run continues where it stopped; ``--num-parts N --part-id K`` computes one share of the cases on one
machine, and a final run without them assembles the fingerprint. ``--status`` only reports progress.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["register", "run_fingerprint"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``fingerprint`` subcommand."""
    parser = subparsers.add_parser(
        "fingerprint",
        help="compute the dataset fingerprint (resumable, shardable)",
        description=(
            "Compute nnU-Net's dataset fingerprint (spacings, shapes after cropping, foreground intensity "
            "statistics) of RAW_DIR into WORK/fingerprint.json. Finished cases are cached in "
            "WORK/fingerprint_cache, so an interrupted run resumes. Next step: `nnseg plan WORK`."
        ),
    )
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the raw dataset folder (holds dataset.json)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="WORK", help="the work folder")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N parts")
    parser.add_argument("--part-id", type=int, default=0, metavar="K", help="compute part K only (0-based)")
    parser.add_argument("--status", action="store_true", help="report cached and missing cases, compute nothing")
    parser.set_defaults(handler=run_fingerprint)


def run_fingerprint(args: argparse.Namespace) -> int:
    """Compute (or report on) the fingerprint; return the exit code."""
    from nnseg.dataset import RawDataset
    from nnseg.fingerprint import extract_fingerprint, fingerprint_cache_status
    from nnseg.sharding import Shard
    from nnseg.workspace import Workspace

    if args.num_workers < 1:
        raise ConfigError(f"--num-workers must be at least 1, got {args.num_workers}")
    shard = Shard(args.part_id, args.num_parts)
    dataset = RawDataset.from_folder(args.raw_dir)
    workspace = Workspace(args.output)
    if args.status:
        status = fingerprint_cache_status(dataset, workspace.fingerprint_cache_dir)
        print(f"{len(status.done)} of {len(dataset)} case(s) cached in {workspace.fingerprint_cache_dir}")
        if status.missing:
            print("missing: " + ", ".join(status.missing))
        return 0
    workspace.initialise(args.raw_dir)
    dataset.spec.save(workspace.dataset_json_path)
    progress = sys.stderr.isatty()
    cache = workspace.fingerprint_cache_dir
    if not shard.is_whole:
        extract_fingerprint(dataset, num_workers=args.num_workers, cache_dir=cache, shard=shard, progress=progress)
        print(f"part {args.part_id} of {args.num_parts} done; when every part is done, run this command "
              "again without --num-parts/--part-id to assemble the fingerprint")  # fmt: skip
        return 0
    fingerprint = extract_fingerprint(dataset, num_workers=args.num_workers, cache_dir=cache, progress=progress)
    fingerprint.save(workspace.fingerprint_path)
    print(f"fingerprint of {len(dataset)} case(s) written to {workspace.fingerprint_path}")
    print(f"next: nnseg plan {args.output}")
    return 0
