"""``nnseg report RUN_OR_WORK -o report.html``: one self-contained HTML page about a run or a work folder."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_report"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write one self-contained HTML page about a run or a work folder",
        description=(
            "Write one HTML file (inline style, script and pictures; no network needed) with, for each run: the "
            "plan and its memory report, the training curves, the validation table per case and label (sortable), "
            "the worst cases' overlays and the timings; for a work folder with best.json, the ranked candidates."
        ),
    )
    parser.add_argument("folder", type=Path, metavar="RUN_OR_WORK", help="a run folder (run.json) or a work folder")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE",
                        help="the HTML file (default report.html)")  # fmt: skip
    parser.add_argument("--evaluation", action="append", default=[], type=Path, metavar="SUMMARY",
                        help="an extra summary.json (or its folder) to show, e.g. of test predictions; repeatable")  # fmt: skip
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Write the report and print its path; return the exit code."""
    from nnseg.presentation import write_report

    extra = [(f"evaluation {path}", path) for path in args.evaluation]
    output = write_report(args.folder, args.output, evaluations=extra)
    print(f"wrote the report to {output.resolve()}")
    return 0
