"""``nnseg report RUN_OR_WORK -o report.html``: one self-contained HTML page about a run or a work folder."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``report`` subcommand."""
    subparsers.add_parser("report", help="(not yet)")
