"""``nnseg crossval RUN_ROOT [-f 0 1 2 3 4]``: gather a run's fold validations and evaluate them together.

Writes ``RUN_ROOT/crossval_results_folds_<folds>/`` (nnU-Net's name and ``summary.json`` layout) against the
raw ``labelsTr`` of the work folder the run belongs to (``WORK/workspace.json``), or ``--ref REF``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["reference_dir", "register", "run_crossval"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``crossval`` subcommand."""
    parser = subparsers.add_parser(
        "crossval", help="gather a run's fold validations into crossval_results_folds_... and evaluate them",
        description="Copy every fold_<k>/validation/ output of RUN_ROOT (label maps, and probabilities where saved) "
                    "into RUN_ROOT/crossval_results_folds_<folds>/ and write its summary.json against the raw "
                    "labelsTr. A missing or unfinished fold, or a case in two folds, is an error.",
    )  # fmt: skip
    parser.add_argument("run_root", type=Path, metavar="RUN_ROOT", help="WORK/runs/<plans>__<configuration>__<run>")
    parser.add_argument("-f", "--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], metavar="FOLD",
                        help="folds to gather (default 0 1 2 3 4)")  # fmt: skip
    parser.add_argument("--ref", type=Path, default=None, metavar="REF",
                        help="reference label maps (default: labelsTr of the work folder's raw dataset)")  # fmt: skip
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="evaluation processes (1)")
    parser.set_defaults(handler=run_crossval)


def reference_dir(work: Path, explicit: Path | None = None) -> Path:
    """``explicit``, or the ``labelsTr`` of the raw dataset recorded in ``work/workspace.json``.

    Raises:
        ConfigError: If neither is available.
    """
    from nnseg.workspace import Workspace

    if explicit is not None:
        return explicit
    workspace = Workspace(work)
    if not workspace.manifest_path.is_file():
        raise ConfigError(
            f"{work} is not an nnseg work folder (no workspace.json), so the raw labels are unknown; pass them with "
            "--ref RAW/labelsTr."
        )
    return workspace.raw_dataset_dir() / "labelsTr"


def run_crossval(args: argparse.Namespace) -> int:
    """Gather and evaluate; return the exit code."""
    from nnseg.selection import accumulate_crossval

    if len(set(args.folds)) != len(args.folds):
        raise ConfigError(f"-f/--folds lists a fold twice: {args.folds}; list each fold once.")
    run_root: Path = args.run_root
    ref = reference_dir(run_root.parent.parent, args.ref)
    result = accumulate_crossval(run_root, ref, folds=args.folds, num_workers=args.num_workers)
    for label, metrics in result.summary.mean.items():
        print(f"label {label}: Dice {metrics['Dice']:.4f}")
    print(f"{len(result.summary.cases)} case(s), foreground-mean Dice {result.score:.4f}; written to {result.folder}")
    return 0
