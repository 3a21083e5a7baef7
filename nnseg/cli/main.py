"""Entry point of the ``nnseg`` command.

Exit codes: 0 done; 1 failed or incomplete; 2 bad usage or bad input (one clear line on stderr,
``--debug`` adds the traceback). Each subcommand lives in its own module that exposes
``register(subparsers)``; the handler it sets returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from nnseg._version import __version__
from nnseg.errors import LockError, NnsegError, WriteError

__all__ = ["FAILED_RUN_ERRORS", "build_parser", "main"]

FAILED_RUN_ERRORS = (WriteError, LockError)
"""Errors that end a command with exit code 1 (the run failed) instead of 2 (bad input or usage)."""

# Subcommand modules, in the order they appear in --help.
SUBCOMMAND_MODULES = (
    "nnseg.cli._synth",
    "nnseg.cli._verify",
    "nnseg.cli._fingerprint",
    "nnseg.cli._plan",
    "nnseg.cli._preprocess",
    "nnseg.cli._train",
    "nnseg.cli._cascade_inputs",
    "nnseg.cli._demo",
    "nnseg.cli._predict",
    "nnseg.cli._evaluate",
    "nnseg.cli._ensemble",
    "nnseg.cli._postprocess",
    "nnseg.cli._crossval",
    "nnseg.cli._find_best",
    "nnseg.cli._model_zip",
    "nnseg.cli._overlay",
    "nnseg.cli._report",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="nnseg",
        description="nnU-Net v2 style self-configuring medical image segmentation, as a library.",
    )
    parser.add_argument("--version", action="version", version=f"nnseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nnseg`` command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except (NnsegError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"nnseg {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        # a failed write or a run held by another process is a failed run (1), not bad input (2)
        return 1 if isinstance(err, FAILED_RUN_ERRORS) else 2
    except KeyboardInterrupt:
        print(f"nnseg {args.command}: interrupted", file=sys.stderr)
        return 1
