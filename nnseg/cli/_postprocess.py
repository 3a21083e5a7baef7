"""``nnseg postprocess determine PRED REF -o PP.json`` and ``nnseg postprocess apply -i IN -o OUT --pp PP.json``.

``determine`` applies nnU-Net's rule (keep the largest foreground component, then the largest component per
label or region, each kept only if Dice rises) on a folder of predictions, writes the postprocessed folder
(default ``PRED/postprocessed``) and the decision as JSON. ``apply`` postprocesses a folder of label maps
(``--num-parts/--part-id`` shard it; finished outputs are skipped on rerun).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["find_dataset_json", "register"]


def find_dataset_json(explicit: Path | None, *candidates: Path) -> Path:
    """``explicit`` if given, else the first existing ``dataset.json`` among ``candidates`` (folders).

    Raises:
        ConfigError: If none is found.
    """
    if explicit is not None:
        return explicit
    for folder in candidates:
        if (folder / "dataset.json").is_file():
            return folder / "dataset.json"
    searched = ", ".join(str(folder) for folder in candidates)
    raise ConfigError(f"no dataset.json found in {searched}; pass the dataset's labels with -d dataset.json.")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``postprocess`` subcommand and its ``determine`` / ``apply`` actions."""
    parser = subparsers.add_parser(
        "postprocess", help="decide (on cross-validation) and apply connected-component postprocessing",
        description="Connected-component postprocessing as nnU-Net decides it: `determine` on cross-validation "
                    "predictions, `apply` to new predictions.",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    determine = actions.add_parser("determine", help="decide the postprocessing on predictions and references")
    determine.add_argument("pred", type=Path, metavar="PRED", help="folder of predicted label maps")
    determine.add_argument("ref", type=Path, metavar="REF", help="folder of reference label maps (labelsTr)")
    determine.add_argument("-o", "--output", type=Path, required=True, metavar="PP_JSON", help="decision file")
    determine.add_argument("--output-folder", type=Path, default=None, metavar="DIR",
                           help="postprocessed predictions (default PRED/postprocessed)")  # fmt: skip
    determine.add_argument("-d", "--dataset-json", type=Path, default=None, metavar="JSON",
                           help="dataset.json (default: PRED/dataset.json, then REF/../dataset.json)")  # fmt: skip
    determine.add_argument("--allow-missing", action="store_true", help="decide on the predicted cases only")
    determine.add_argument("--num-workers", type=int, default=1, metavar="N", help="worker processes (1)")
    determine.set_defaults(handler=run_determine)
    apply = actions.add_parser("apply", help="apply a postprocessing file to a folder of label maps")
    apply.add_argument("-i", "--input", type=Path, required=True, metavar="IN", help="folder of label maps")
    apply.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    apply.add_argument("--pp", type=Path, required=True, metavar="PP_JSON", help="file written by determine")
    apply.add_argument("-d", "--dataset-json", type=Path, default=None, metavar="JSON",
                       help="dataset.json (default: IN/dataset.json, then PP_JSON's folder)")  # fmt: skip
    apply.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N parts")
    apply.add_argument("--part-id", type=int, default=0, metavar="K", help="process part K only (0-based)")
    apply.add_argument("--overwrite", action="store_true", help="redo cases whose output exists")
    apply.set_defaults(handler=run_apply)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def run_determine(args: argparse.Namespace) -> int:
    """Determine, write the decision and the postprocessed folder; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.postprocessing import Postprocessing

    spec = DatasetSpec.load(find_dataset_json(args.dataset_json, args.pred, args.ref.parent))
    out_dir = args.output_folder or args.pred / "postprocessed"
    pp = Postprocessing.determine(args.pred, args.ref, spec, out_dir, allow_missing=args.allow_missing,
                                  num_workers=args.num_workers)  # fmt: skip
    pp.save(args.output)
    for trial in pp.trials:
        verdict = "kept" if trial.accepted else "not kept"
        print(f"largest component of {list(trial.labels)}: {trial.criterion} Dice {_fmt(trial.dice_before)} -> "
              f"{_fmt(trial.dice_after)}, {verdict}")  # fmt: skip
    print(f"foreground-mean Dice {_fmt(pp.dice_before['foreground_mean'])} -> {_fmt(pp.dice_after['foreground_mean'])}"
          f"; decision written to {args.output}, postprocessed files in {out_dir}")  # fmt: skip
    return 0


def run_apply(args: argparse.Namespace) -> int:
    """Apply one part; return the exit code."""
    from nnseg.dataset import DatasetSpec
    from nnseg.postprocessing import Postprocessing, apply_postprocessing_folder
    from nnseg.sharding import Shard

    shard = Shard(args.part_id, args.num_parts)
    pp = Postprocessing.load(args.pp)
    spec = DatasetSpec.load(find_dataset_json(args.dataset_json, args.input, args.pp.parent))
    written = apply_postprocessing_folder(pp, args.input, args.output, spec, shard=shard, overwrite=args.overwrite)
    print(f"{shard}: {len(written)} label map(s) postprocessed into {args.output}")
    return 0
