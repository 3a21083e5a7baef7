"""``nnseg verify RAW_DIR`` / ``nnseg verify WORK``: check a raw dataset folder, or a whole work folder.

The folder's content decides: a ``workspace.json`` makes it a work folder, anything else is checked as a raw
dataset. RAW_DIR: one line per problem (the layout problems, then the problems found by reading every case
whose files could be found, even when the layout is broken) and a summary line; exit 0 without errors
(warnings allowed), 2 with errors. WORK: one line per damaged item with the command that repairs it (see
:func:`nnseg._verify_work.verify_work`), one INCOMPLETE line per unfinished prediction folder with the command
that finishes it; exit 0 when nothing is damaged (unfinished work included), 1 when something is damaged.
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
        help="check a raw dataset folder (layout, every file, every case) or a work folder (every artifact)",
        description=(
            "Check an nnU-Net raw dataset folder: the layout (dataset.json, file names, channel files, labels, "
            "numTraining), then read every file and report unreadable files, shape and spacing mismatches, "
            "NaN/inf intensities and undeclared label values. Every problem is listed in one run, layout "
            "problems included. Exit 0 without errors (warnings allowed), 2 with errors. Given a work folder "
            "(holding workspace.json): check workspace.json, dataset.json, fingerprint, plans, every store, run "
            "folder, cross-validation and prediction folder, and print each damaged item with the command that "
            "repairs it (unfinished prediction folders: INCOMPLETE, with the command that finishes them); exit 0 "
            "when nothing is damaged, 1 when something is damaged."
        ),
    )
    parser.add_argument(
        "raw_dir",
        type=Path,
        metavar="RAW_DIR|WORK",
        help="the dataset folder (holds dataset.json) or a work folder (holds workspace.json)",
    )
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the dataset (or work folder), print every problem and a summary, and return the exit code."""
    from nnseg._verify_work import is_work_folder, verify_work
    from nnseg.dataset import verify_folder

    if is_work_folder(args.raw_dir):
        work = verify_work(args.raw_dir)
        print(work.format())
        return 0 if work.ok else 1

    report = verify_folder(args.raw_dir, num_workers=args.num_workers, progress=sys.stderr.isatty())
    print(report.format())
    return 0 if report.ok else 2
