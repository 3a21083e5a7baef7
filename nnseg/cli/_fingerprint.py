"""``nnseg fingerprint RAW_DIR -o WORK``: compute a dataset's fingerprint into a work folder.

Writes ``WORK/workspace.json`` (which raw dataset the folder belongs to), ``WORK/dataset.json`` and
``WORK/fingerprint.json``. Per-case results go to ``WORK/fingerprint_cache/`` as they finish, so a killed
run continues where it stopped; ``--num-parts N --part-id K`` computes one share of the cases on one
machine, and a final run without them assembles the fingerprint. ``--status`` only reports progress: exit
status 0 when every case (of the part, with ``--part-id``) is cached or assembled, 1 when some are missing.
Once ``fingerprint.json`` is written the cache is deleted (it holds the intensity samples, up to 400 MB
per channel) unless ``--keep-cache``; an existing ``fingerprint.json`` of the same cases is kept unless
``--clean``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from nnseg._checks import parse_int

if TYPE_CHECKING:
    from nnseg.dataset import RawDataset
    from nnseg.sharding import Shard
    from nnseg.workspace import Workspace

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
    parser.add_argument(
        "--num-samples",
        type=int,
        default=None,
        metavar="N",
        help="foreground samples per case and channel (default nnU-Net's 1e8 // cases; other values differ from "
        "nnU-Net; give the same value to every part, --status and the assembling run)",
    )
    parser.add_argument("--clean", action="store_true", help="recompute even if WORK/fingerprint.json exists")
    parser.add_argument("--keep-cache", action="store_true", help="keep WORK/fingerprint_cache after assembling")
    parser.set_defaults(handler=run_fingerprint)


def run_fingerprint(args: argparse.Namespace) -> int:
    """Compute (or report on) the fingerprint; return the exit code.

    Warnings (e.g. a constant channel) are printed as one ``nnseg fingerprint: warning: ...`` line each on
    stderr, also when the command then fails.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _run(args)
        finally:
            for warning in caught:
                print(f"nnseg fingerprint: warning: {warning.message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from nnseg.dataset import RawDataset
    from nnseg.sharding import Shard
    from nnseg.workspace import Workspace

    parse_int("nnseg fingerprint", "--num-workers", args.num_workers, minimum=1)
    shard = Shard(args.part_id, args.num_parts)
    dataset = RawDataset.from_folder(args.raw_dir)
    workspace = Workspace(args.output)
    if args.status:
        return _report_status(dataset, workspace, shard, args.num_samples)
    workspace.initialise(args.raw_dir)
    dataset.spec.save(workspace.dataset_json_path)
    if not shard.is_whole:
        return _compute_part(dataset, workspace, shard, args)
    if not args.clean and _is_current(workspace, dataset):
        print(f"{workspace.fingerprint_path} already holds the fingerprint of these {len(dataset)} case(s); "
              "pass --clean to recompute it")  # fmt: skip
        return 0
    return _assemble(dataset, workspace, args)


def _report_status(dataset: RawDataset, workspace: Workspace, shard: Shard, num_samples: int | None) -> int:
    from nnseg.fingerprint import fingerprint_cache_status

    if workspace.fingerprint_path.is_file() and _is_current(workspace, dataset):
        print(f"done: {workspace.fingerprint_path} holds the fingerprint of all {len(dataset)} case(s)")
        return 0
    status = fingerprint_cache_status(dataset, workspace.fingerprint_cache_dir, num_samples=num_samples)
    print(f"{len(status.done)} of {len(dataset)} case(s) cached in {workspace.fingerprint_cache_dir}")
    missing = status.missing if shard.is_whole else status.missing_in(shard)
    where = "" if shard.is_whole else f" in {shard}"
    if missing:
        print(f"missing{where}: " + ", ".join(missing))
        return 1  # incomplete, as every --status of nnseg reports it
    if status.is_complete:
        print("every case is cached; run without --status (and without --num-parts/--part-id) to assemble")
    return 0


def _compute_part(dataset: RawDataset, workspace: Workspace, shard: Shard, args: argparse.Namespace) -> int:
    from nnseg.fingerprint import extract_fingerprint

    extract_fingerprint(dataset, num_workers=args.num_workers, cache_dir=workspace.fingerprint_cache_dir, shard=shard,
                        progress=sys.stderr.isatty(), num_samples=args.num_samples)  # fmt: skip
    print(f"{shard} done; when every part is done, run this command again without --num-parts/--part-id "
          "to assemble the fingerprint")  # fmt: skip
    return 0


def _assemble(dataset: RawDataset, workspace: Workspace, args: argparse.Namespace) -> int:
    from nnseg.fingerprint import extract_fingerprint

    cache = workspace.fingerprint_cache_dir
    fingerprint = extract_fingerprint(dataset, num_workers=args.num_workers, cache_dir=cache,
                                      progress=sys.stderr.isatty(), num_samples=args.num_samples)  # fmt: skip
    fingerprint.save(workspace.fingerprint_path)
    print(f"fingerprint of {len(dataset)} case(s) written to {workspace.fingerprint_path}")
    if not args.keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    print(f"next: nnseg plan {workspace.root}")
    return 0


def _is_current(workspace: Workspace, dataset: RawDataset) -> bool:
    """Whether ``fingerprint.json`` exists, loads, and lists exactly the dataset's training cases."""
    from nnseg.errors import FingerprintError
    from nnseg.fingerprint import Fingerprint

    if not workspace.fingerprint_path.is_file():
        return False
    try:
        return Fingerprint.load(workspace.fingerprint_path).case_ids == dataset.case_ids
    except FingerprintError:
        return False
