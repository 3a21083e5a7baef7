"""``nnseg evaluate PRED REF``: Dice, IoU and confusion counts per label or region, written as summary.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["register", "run_evaluate"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare predictions with reference label maps (nnU-Net's summary.json)",
        description=(
            "Compute Dice, IoU, TP/FP/FN/TN per label (or region) for every <case><ending> of PRED against the "
            "file of the same name in REF, and write nnU-Net's summary.json. A reference without a prediction is "
            "an error unless --allow-missing."
        ),
    )
    parser.add_argument("pred", type=Path, metavar="PRED", help="folder of predicted label maps")
    parser.add_argument("ref", type=Path, metavar="REF", help="folder of reference label maps (e.g. labelsTs)")
    parser.add_argument("-d", "--dataset-json", type=Path, default=None, metavar="JSON",
                        help="dataset.json with the labels (default: REF/../dataset.json, then PRED/dataset.json)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                        help="summary file (default PRED/summary.json)")  # fmt: skip
    parser.add_argument("--allow-missing", action="store_true", help="evaluate only references with a prediction")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.set_defaults(handler=run_evaluate)


def _dataset_json(args: argparse.Namespace) -> Path:
    if args.dataset_json is not None:
        return Path(args.dataset_json)
    for candidate in (args.ref.parent / "dataset.json", args.pred / "dataset.json"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no dataset.json found in {args.ref.parent} or {args.pred}; pass the dataset's labels with -d dataset.json."
    )


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate and write the summary; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.evaluation import evaluate_folder

    spec = DatasetSpec.load(_dataset_json(args))
    summary = evaluate_folder(args.pred, args.ref, spec, allow_missing=args.allow_missing, num_workers=args.num_workers)
    output = args.output or args.pred / "summary.json"
    summary.save(output)
    for label, metrics in summary.mean.items():
        print(f"label {label}: Dice {metrics['Dice']:.4f}  IoU {metrics['IoU']:.4f}")
    print(f"{len(summary.cases)} case(s), mean Dice {summary.mean_dice:.4f}; summary written to {output}")
    return 0
