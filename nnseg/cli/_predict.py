"""``nnseg predict -i IN -o OUT -m MODEL``: segment a folder of images, one shard at a time, never losing a case.

``MODEL`` is an nnseg run folder (``checkpoint_final.pt``), a folder of nnseg runs ``fold_<k>/``, or an
nnU-Net v2 trained model folder (``plans.json``, ``dataset.json``, ``fold_<k>/checkpoint_final.pth``).
``--num-parts N --part-id K`` predicts nnU-Net's share K of N; each part records what it owns, finished
outputs are skipped on rerun, partial ones redone. ``nnseg predict --status -o OUT`` lists, per part, the cases
done and missing and exits 0 only when the whole run is complete.

A cascade model (nnU-Net's ``3d_cascade_fullres`` folder with its ``3d_lowres`` sibling, or an nnseg cascade
run) predicts the lowres stage first into ``OUT/.previous_stage/``, or takes ``--prev-stage-predictions DIR``.

``-m`` given more than once (``-m RUN_A -m RUN_B``) predicts each model with probabilities into
``OUT/.members/<k>/`` and ensembles them into OUT in probability space, like ``nnseg ensemble``.
Exit codes: 0 done, 1 failed cases, a failed write or a held lock, 2 bad input or usage, 130 / 143 stopped by
SIGINT / SIGTERM between cases (rerun to finish).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nnseg.errors import ConfigError

__all__ = ["inference_settings", "load_predictor", "register", "run_predict"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="segment a folder of images (shardable, resumable, nnU-Net model folders too)",
        description=(
            "Predict every <case>_<XXXX><ending> case of IN into OUT with an nnseg run or an nnU-Net v2 trained "
            "model folder. Complete outputs are skipped, partial ones redone. With --num-parts/--part-id each "
            "part takes nnU-Net's share of the sorted cases; `nnseg predict --status -o OUT` tells what is missing."
        ),
    )
    parser.add_argument("-i", "--input", type=Path, metavar="IN", help="folder of input images")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="output folder")
    parser.add_argument("-m", "--model", type=Path, action="append", metavar="MODEL",
                        help="nnseg run folder or nnU-Net model folder; give it more than once to ensemble models "
                             "(e.g. 2d and 3d_fullres) in probability space")  # fmt: skip
    parser.add_argument("-f", "--folds", nargs="+", default=None, metavar="FOLD",
                        help="folds to ensemble (default: every fold_<k> with the checkpoint)")  # fmt: skip
    parser.add_argument("--checkpoint", default=None, metavar="NAME",
                        help="nnseg: final, best or latest (default final); nnU-Net: checkpoint file name "
                             "(default checkpoint_final.pth)")  # fmt: skip
    parser.add_argument("--plans", type=Path, default=None, metavar="PLANS_JSON",
                        help="plans file of an nnseg run whose checkpoints lack it")  # fmt: skip
    parser.add_argument("--prev-stage-predictions", type=Path, default=None, metavar="DIR",
                        help="cascade models: the previous stage's segmentations (<case><ending>, or nnU-Net's "
                             "predicted_next_stage <case>.b2nd) instead of predicting the 3d_lowres stage first")  # fmt: skip
    parser.add_argument("--num-parts", type=int, default=1, metavar="N", help="split the cases into N parts")
    parser.add_argument("--part-id", type=int, default=0, metavar="K", help="predict part K only (0-based)")
    parser.add_argument("--no-tta", action="store_true", help="disable mirror test-time augmentation")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--step-size", type=float, default=0.5, help="tile step as a fraction of the patch")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="network inputs (tiles, mirrored copies) per forward pass (default 4; 1 as nnU-Net)",
    )
    parser.add_argument("--nnunet-numerics", action="store_true",
                        help="float16 blending, one input per pass, network as built: nnU-Net's segmentations "
                             "bit for bit (slower)")  # fmt: skip
    parser.add_argument("--save-probabilities", action="store_true", help="also write <case>.npz and <case>.json")
    parser.add_argument("--overwrite", action="store_true", help="redo this part's cases even if complete")
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="preprocessing threads (default 1)")
    parser.add_argument("--status", action="store_true", help="report done / missing cases per part, predict nothing")
    parser.set_defaults(handler=run_predict)


def _folds(values: list[str] | None) -> list[int | str] | None:
    if values is None:
        return None
    return [value if value == "all" else int(value) for value in values]


def inference_settings(args: argparse.Namespace) -> Any:
    """The :class:`~nnseg.inference.InferenceSettings` the arguments describe.

    Raises:
        ConfigError: For a bad ``--step-size``, ``--batch-size`` or ``--device``.
    """
    from nnseg.inference import InferenceSettings

    settings = InferenceSettings(tile_step_size=args.step_size, use_mirroring=not args.no_tta,
                                 tile_batch_size=args.batch_size, device=args.device,
                                 save_probabilities=args.save_probabilities)  # fmt: skip
    return settings.with_nnunet_numerics() if args.nnunet_numerics else settings


def load_predictor(args: argparse.Namespace, model: Path | None = None) -> Any:
    """Build the :class:`~nnseg.inference.Predictor` the arguments describe (for ``model``, default the first -m).

    Raises:
        ConfigError: If MODEL is neither an nnseg run (folder) nor an nnU-Net model folder.
    """
    from nnseg.inference import Predictor
    from nnseg.planning import Plans

    if model is None:
        model = args.model[0] if isinstance(args.model, list) and args.model else args.model
    if model is None or isinstance(model, list):
        raise ConfigError("nnseg predict needs -m MODEL.")
    settings = inference_settings(args)
    if (model / "plans.json").is_file() and (model / "dataset.json").is_file():
        return Predictor.from_nnunet_model_folder(
            model,
            folds=_folds(args.folds),
            checkpoint_name=args.checkpoint or "checkpoint_final.pth",
            settings=settings,
        )
    plans = Plans.load(args.plans) if args.plans else None
    checkpoint = args.checkpoint or "final"
    if any(model.glob("checkpoint_*.pt")):
        return Predictor.from_run(model, checkpoint=checkpoint, plans=plans, settings=settings)
    folds = _folds(args.folds) or sorted(
        int(d.name[5:]) for d in model.glob("fold_*") if d.name[5:].isdigit() and any(d.glob("checkpoint_*.pt"))
    )
    if not folds:
        raise ConfigError(
            f"-m {model}: not an nnseg run folder (no checkpoint_*.pt), a folder of runs fold_<k>/, or an nnU-Net "
            "model folder (plans.json + dataset.json + fold_<k>/); point -m at one of those."
        )
    return Predictor.from_run(
        [model / f"fold_{f}" for f in folds], checkpoint=checkpoint, plans=plans, settings=settings
    )


def run_predict(args: argparse.Namespace) -> int:
    """Predict one part (or report the status); return the exit code."""
    from nnseg.inference import CasesFailedError
    from nnseg.inference._stop import PredictionStopped
    from nnseg.sharding import Shard

    if args.status:
        return _report_status(args.output)
    if args.input is None or not args.model:
        raise ConfigError("nnseg predict needs -i IN and -m MODEL (or --status to only report on -o OUT).")
    shard = Shard(args.part_id, args.num_parts)
    if len(args.model) > 1:
        if args.prev_stage_predictions is not None:
            raise ConfigError("--prev-stage-predictions works with one cascade model (-m once), not with an ensemble.")
        return _predict_ensemble(args, shard)
    predictor = load_predictor(args)
    try:
        status = predictor.predict_folder(args.input, args.output, shard=shard, overwrite=args.overwrite,
                                          num_workers=args.num_workers, progress=sys.stderr.isatty(),
                                          previous_stage_dir=args.prev_stage_predictions)  # fmt: skip
    except CasesFailedError as err:
        print(f"nnseg predict: {err}", file=sys.stderr)
        return 1
    except PredictionStopped as err:  # SIGINT 130, SIGTERM 143: the shell's convention for a stop by a signal
        print(f"nnseg predict: {err}", file=sys.stderr)
        return err.exit_code
    print("\n".join(status.summary()))
    if not status.is_complete:
        print(f"{shard} done; the run is complete once every part has run (see `nnseg predict --status -o OUT`)")
    return 0


def _report_status(output: Path) -> int:
    from nnseg.inference import prediction_status
    from nnseg.inference._cascade import PREVIOUS_STAGE_DIR
    from nnseg.inference._ensemble import MEMBERS_DIR, ensemble_status

    if (output / MEMBERS_DIR).is_dir():
        lines, complete = ensemble_status(output)
    elif (output / PREVIOUS_STAGE_DIR).is_dir():  # a cascade: the lowres stage, then the cascade's outputs
        first, last = prediction_status(output / PREVIOUS_STAGE_DIR), prediction_status(output)
        lines = [f"previous stage: {line}" for line in first.summary()] + last.summary()
        complete = last.is_complete
    else:
        status = prediction_status(output)
        lines, complete = status.summary(), status.is_complete
    print("\n".join(lines))
    return 0 if complete else 1


def _predict_ensemble(args: argparse.Namespace, shard: Any) -> int:
    from nnseg.inference import CasesFailedError
    from nnseg.inference._ensemble import predict_ensemble
    from nnseg.inference._stop import PredictionStopped

    predictors = [load_predictor(args, model) for model in args.model]
    try:
        written = predict_ensemble(predictors, args.input, args.output, names=[str(m) for m in args.model], shard=shard,
                                   overwrite=args.overwrite, save_probabilities=args.save_probabilities,
                                   num_workers=args.num_workers, progress=sys.stderr.isatty())  # fmt: skip
    except CasesFailedError as err:
        print(f"nnseg predict: {err}", file=sys.stderr)
        return 1
    except PredictionStopped as err:
        print(f"nnseg predict: {err}", file=sys.stderr)
        return err.exit_code
    print(f"{shard}: {len(written)} case(s) ensembled from {len(predictors)} models into {args.output}; "
          "`nnseg predict --status -o OUT` tells what is missing")  # fmt: skip
    return 0
