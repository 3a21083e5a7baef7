"""``nnseg verify RAW_DIR``: check a raw dataset folder and list every problem.

Prints one line per problem (layout problems, or the problems of every case) and a summary line.
Exit code 0 when there is no error (warnings allowed), 2 when the layout is broken or any case has an
error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
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
            "NaN/inf intensities and undeclared label values. Exit 0 without errors, 2 with errors."
        ),
    )
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the dataset folder (holds dataset.json)")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the dataset, print every problem and a summary, and return the exit code."""
    from nnseg.dataset import RawDataset
    from nnseg.dataset._raw import DatasetLayoutError

    try:
        # Layout warnings are printed below as part of the report, not a second time by the warnings module.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = RawDataset.from_folder(args.raw_dir)
    except DatasetLayoutError as err:
        for problem in err.problems:
            print(problem.format())
        num_errors = sum(p.severity == "error" for p in err.problems)
        print(f"{num_errors} layout error(s) in {args.raw_dir}; the files were not read. Fix the layout and run "
              "nnseg verify again.")
        return 2
    report = dataset.verify(num_workers=args.num_workers, progress=sys.stderr.isatty())
    print(report.format())
    return 0 if report.ok else 2
