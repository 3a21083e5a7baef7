"""``nnseg verify RAW_DIR``: check a raw dataset folder and list every problem.

Prints one line per problem (the layout problems, then the problems found by reading every case whose
files could be found, even when the layout is broken) and a summary line. Exit code 0 when there is no
error (warnings allowed), 2 when there is any error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run_verify"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``verify`` subcommand."""
    parser = subparsers.add_parser(
        "verify",
        help="check a raw dataset folder (layout, every file, every case)",
        description=(
            "Check an nnU-Net raw dataset folder: the layout (dataset.json, file names, channel files, labels, "
            "numTraining), then read every file and report unreadable files, shape and spacing mismatches, "
            "NaN/inf intensities and undeclared label values. Every problem is listed in one run, layout "
            "problems included. Exit 0 without errors (warnings allowed), 2 with errors."
        ),
    )
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the dataset folder (holds dataset.json)")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the dataset, print every problem and a summary, and return the exit code."""
    from nnseg.dataset import verify_folder

    report = verify_folder(args.raw_dir, num_workers=args.num_workers, progress=sys.stderr.isatty())
    print(report.format())
    return 0 if report.ok else 2
