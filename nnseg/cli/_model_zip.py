"""``nnseg export-model RUN_ROOT -o model.zip`` and ``nnseg import-model model.zip -o DIR``: share trained models.

The zip of ``export-model`` holds each fold's checkpoint with its run description, training log and validation
summaries, checksummed. ``import-model`` installs it, or a zip of nnU-Net's ``nnUNetv2_export_model_to_zip``, and
refuses entries outside DIR, links and archives larger than ``--max-size-gb``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run_export_model", "run_import_model"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``export-model`` and ``import-model`` subcommands."""
    export = subparsers.add_parser(
        "export-model",
        help="pack a trained run (its folds) into a model zip",
        description="Write the folds of RUN_ROOT (WORK/runs/<plans>__<config>__<run>) with their checkpoint into "
        "a zip that `nnseg import-model` installs anywhere.",
    )
    export.add_argument("run_root", type=Path, metavar="RUN_ROOT", help="folder of fold_<k>/ runs (or one run)")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="ZIP", help="the zip to write")
    export.add_argument("-f", "--folds", nargs="+", default=None, metavar="FOLD", help="default: every trained fold")
    export.add_argument("--checkpoint", choices=("final", "best", "latest"), default="final",
                        help="which checkpoint of each fold (default final)")  # fmt: skip
    export.set_defaults(handler=run_export_model)
    install = subparsers.add_parser(
        "import-model",
        help="install a model zip (nnseg's or nnU-Net's) into a folder",
        description="Extract ZIP into DIR safely: entries outside DIR, links, damaged files and archives larger "
        "than --max-size-gb are refused and nothing is left behind. Prints the model folders to pass to "
        "`nnseg predict -m`.",
    )
    install.add_argument("zip", type=Path, metavar="ZIP", help="the model zip")
    install.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="where to install it")
    install.add_argument("--max-size-gb", type=float, default=50.0, help="refuse larger archives (default 50)")
    install.add_argument("--overwrite", action="store_true", help="replace files that already exist in DIR")
    install.set_defaults(handler=run_import_model)


def run_export_model(args: argparse.Namespace) -> int:
    """Write the zip; return the exit code."""
    from nnseg.model_zip import export_model

    output = export_model(args.run_root, args.output, folds=args.folds, checkpoint=args.checkpoint)
    print(f"model written to {output}")
    return 0


def run_import_model(args: argparse.Namespace) -> int:
    """Install the zip; return the exit code."""
    from nnseg._checks import parse_number
    from nnseg.model_zip import import_model

    size = parse_number("import-model", "--max-size-gb", args.max_size_gb, low=0.0, low_open=True)
    installed = import_model(args.zip, args.output, max_bytes=int(size * 1024**3), overwrite=args.overwrite)
    for folder in installed.models:
        print(f"installed {folder}  (predict: nnseg predict -i IN -o OUT -m {folder})")
    return 0
