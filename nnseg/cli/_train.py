"""``nnseg train WORK -c CONFIG -f FOLD``: train one fold of one configuration of a work folder.

Reads ``WORK/plans/<plans>.json``, ``WORK/dataset.json`` and the store ``WORK/preprocessed/<store_name>/``
written by ``nnseg preprocess``; takes fold ``k`` from ``WORK/splits_final.json`` (nnU-Net's file and format,
created with nnU-Net's folds when missing; ``--splits-file`` overrides it); trains into
``WORK/runs/<plans>__<configuration>__<run_name>/fold_<k>/``. Running the same command again resumes exactly
from the last checkpoint (or does nothing once finished); ``--val-only`` reruns the final validation.
SIGTERM / SIGINT (a cluster's preemption, Ctrl-C) save ``checkpoint_latest.pt`` at the next step and exit with
143 / 130; running the same command resumes bitwise-identically. A second ``nnseg train`` of the same run folder
exits 1 naming the first (a ``LockError``), as does a failed checkpoint write (``WriteError``).

Multi-GPU / multi-node: launch with ``torchrun --nproc-per-node N nnseg train ...`` (any ``torchrun`` options);
this module reads torchrun's ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``, initialises the process group
(NCCL on CUDA, gloo on CPU) and gives each process ``cuda:<LOCAL_RANK>``. The library itself never reads
environment variables.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nnseg.errors import ConfigError, TrainingStopped

if TYPE_CHECKING:
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split

__all__ = ["CONFIG_FLAGS", "config_from_args", "register", "run_train"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train one fold of one configuration (resumes exactly; DDP with torchrun)",
        description=(
            "Train fold FOLD of configuration CONFIG on WORK's preprocessed store, for "
            "iterations-per-epoch x num-epochs optimiser steps. Run `nnseg preprocess WORK -c CONFIG` first. "
            "Rerunning resumes from the last checkpoint. For several GPUs: torchrun --nproc-per-node N $(which "
            "nnseg) train ..."
        ),
    )
    parser.add_argument("work", type=Path, metavar="WORK", help="the work folder")
    parser.add_argument("-c", "--configuration", required=True, metavar="CONFIG", help="e.g. 3d_fullres or 2d")
    parser.add_argument("-f", "--fold", required=True, metavar="FOLD", help="0-4 (nnU-Net's folds), or 'all'")
    parser.add_argument("--plans", default="nnUNetPlans", metavar="PLANS_NAME", help="default nnUNetPlans")
    parser.add_argument("--run-name", default="nnseg", help="run folder suffix (default nnseg)")
    parser.add_argument("--splits-file", type=Path, default=None, help="an nnU-Net splits_final.json to use")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument(
        "--val-only",
        action="store_true",
        help="rerun the final validation of a finished run without training (nnU-Net's --val)",
    )
    _add_config_flags(parser)
    parser.set_defaults(handler=run_train)


# Every TrainerConfig field and its flag (tests check that none is missing).
CONFIG_FLAGS = {
    "iterations_per_epoch": "--iterations-per-epoch", "num_epochs": "--num-epochs",
    "val_iterations_per_epoch": "--val-iterations", "initial_lr": "--initial-lr", "weight_decay": "--weight-decay",
    "momentum": "--momentum", "nesterov": "--no-nesterov", "poly_exponent": "--poly-exponent",
    "lr_schedule": "--lr-schedule", "oversample_foreground": "--oversample-foreground",
    "probabilistic_oversampling": "--probabilistic-oversampling",
    "replay_validation_batches": "--replay-validation-batches", "deep_supervision": "--no-deep-supervision",
    "grad_clip_norm": "--grad-clip-norm", "amp": "--amp", "compile": "--compile",
    "cudnn_benchmark": "--cudnn-benchmark", "seed": "--seed", "num_loader_workers": "--num-workers",
    "checkpoint_every_epochs": "--checkpoint-every", "keep_checkpoints": "--keep-checkpoints",
    "ema_momentum": "--ema-momentum", "final_validation": "--no-final-validation", "save_probabilities": "--npz",
    "validate_with_best": "--val-best", "pretrained_weights": "--pretrained-weights",
    "augmentation_device": "--augmentation-device",
}  # fmt: skip


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainerConfig field; the defaults are TrainerConfig's (nnU-Net's)."""
    add = parser.add_argument
    add("--iterations-per-epoch", type=int, default=250, metavar="N", help="optimiser steps per epoch (250)")
    add("--num-epochs", type=int, default=1000, metavar="N", help="default 1000")
    add("--val-iterations", type=int, default=50, metavar="N", help="pseudo-Dice batches per epoch (50)")
    add("--initial-lr", type=float, default=1e-2, metavar="LR", help="learning rate at step 0 (0.01)")
    add("--weight-decay", type=float, default=3e-5, metavar="W", help="SGD weight decay (3e-5)")
    add("--momentum", type=float, default=0.99, metavar="M", help="SGD momentum (0.99)")
    add("--no-nesterov", action="store_true", help="plain momentum instead of Nesterov's")
    add("--poly-exponent", type=float, default=0.9, metavar="E", help="exponent of the poly decay (0.9)")
    add(
        "--lr-schedule",
        choices=("per_epoch", "per_step"),
        default="per_epoch",
        help="poly decay set at the start of each epoch (default, nnU-Net's) or every step",
    )
    add(
        "--oversample-foreground",
        type=float,
        default=0.33,
        metavar="P",
        help="fraction of each batch forced to contain foreground (0.33)",
    )
    add(
        "--probabilistic-oversampling",
        action="store_true",
        help="force each sample with probability P instead of the last fraction of the batch",
    )
    add(
        "--replay-validation-batches",
        action="store_true",
        help="validate every epoch on the same batches (default: fresh batches each epoch, as nnU-Net)",
    )
    add("--no-deep-supervision", action="store_true", help="train with the full-resolution loss only")
    add("--grad-clip-norm", default="12", metavar="NORM", help="gradient norm clipping (12); 'none' disables it")
    add("--amp", choices=("auto", "on", "off"), default="auto", help="mixed precision (auto: on for CUDA)")
    add("--compile", action="store_true", help="wrap the network with torch.compile")
    add("--cudnn-benchmark", action="store_true", help="cudnn autotuning (faster, not bitwise)")
    add("--seed", type=int, default=0, help="seed of initialisation, sampling, augmentation")
    add("--num-workers", type=int, default=2, metavar="N", help="data loader processes (2)")
    add("--checkpoint-every", type=int, default=1, metavar="EPOCHS", help="checkpoint_latest every EPOCHS (1)")
    add("--keep-checkpoints", type=int, default=1, metavar="K", help="periodic states to keep (1: latest only)")
    add("--ema-momentum", type=float, default=0.9, metavar="M", help="EMA weight of the pseudo-Dice history (0.9)")
    add("--no-final-validation", action="store_true", help="skip the full-case validation")
    add("--npz", action="store_true", help="the final validation also saves probabilities (<case>.npz, for ensembles)")
    add("--val-best", action="store_true", help="the final validation uses checkpoint_best instead of the final one")
    add(
        "--pretrained-weights",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="start a new run from an nnseg/nnU-Net checkpoint's weights (all but the segmentation heads)",
    )
    add(
        "--augmentation-device",
        default=None,
        metavar="DEVICE",
        help="augment on this device (e.g. cuda) from patches cropped by the workers (default: in the workers)",
    )


def config_from_args(args: argparse.Namespace) -> TrainerConfig:
    """The TrainerConfig the flags describe.

    Raises:
        ConfigError: If a value is out of range (TrainerConfig's checks).
    """
    from nnseg.training._config import TrainerConfig

    clip = None if str(args.grad_clip_norm).lower() == "none" else _number("--grad-clip-norm", args.grad_clip_norm)
    return TrainerConfig(
        iterations_per_epoch=args.iterations_per_epoch, num_epochs=args.num_epochs,
        val_iterations_per_epoch=args.val_iterations, initial_lr=args.initial_lr, weight_decay=args.weight_decay,
        momentum=args.momentum, nesterov=not args.no_nesterov, poly_exponent=args.poly_exponent,
        lr_schedule=args.lr_schedule, oversample_foreground=args.oversample_foreground,
        probabilistic_oversampling=args.probabilistic_oversampling,
        replay_validation_batches=args.replay_validation_batches, deep_supervision=not args.no_deep_supervision,
        grad_clip_norm=clip, amp={"auto": None, "on": True, "off": False}[args.amp], compile=args.compile,
        cudnn_benchmark=args.cudnn_benchmark, seed=args.seed, num_loader_workers=args.num_workers,
        checkpoint_every_epochs=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
        ema_momentum=args.ema_momentum, final_validation=not args.no_final_validation,
        save_probabilities=args.npz, validate_with_best=args.val_best,
        pretrained_weights=None if args.pretrained_weights is None else str(args.pretrained_weights),
        augmentation_device=args.augmentation_device,
    )  # fmt: skip


def _number(flag: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{flag} must be a number or 'none'; got {value!r}. Use e.g. {flag} 12.") from None


def _torchrun() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment; ``(0, 0, 1)`` outside torchrun."""
    try:
        return (
            int(os.environ.get("RANK", 0)),
            int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)),
        )
    except ValueError as err:
        raise ConfigError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers (set by torchrun): {err}.") from err


def _fold(value: str) -> int | Literal["all"]:
    if value == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"-f/--fold must be an integer or 'all'; got {value!r}.") from None


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume, or do nothing for a finished run, or only validate); return the exit code."""
    import torch
    import torch.distributed as dist

    rank, local_rank, world_size = _torchrun()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{local_rank}"
    if world_size > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world_size)
    try:
        done = _train(args, device, is_main=rank == 0)
    except TrainingStopped as err:  # SIGINT 130, SIGTERM 143: the shell's convention for a stop by a signal
        if rank == 0:
            print(f"nnseg train: {err}", file=sys.stderr)
        return err.exit_code
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank == 0:
        print(done)
    return 0


def _train(args: argparse.Namespace, device: str, *, is_main: bool) -> str:
    from nnseg.dataset import DatasetSpec
    from nnseg.planning import Plans
    from nnseg.preprocessing import PreprocessedStore, store_name
    from nnseg.training._cascade import trainer_for_run
    from nnseg.workspace import Workspace

    workspace = Workspace(args.work)
    plan = Plans.load(workspace.plans_path(args.plans))[args.configuration]
    spec = DatasetSpec.load(workspace.dataset_json_path)
    store = PreprocessedStore(workspace.preprocessed_dir(store_name(plan, spec)))
    if store.manifest() is None:
        raise ConfigError(
            f"no preprocessed store for configuration {args.configuration!r} of plans {args.plans!r} at {store.root}; "
            f"run `nnseg preprocess {args.work} -c {args.configuration} --plans {args.plans}` first."
        )
    config = config_from_args(args)
    split = _split(args, workspace.splits_path, store.case_ids(), write=is_main and not args.val_only)
    labels = workspace.raw_dataset_dir() / "labelsTr" if workspace.manifest_path.is_file() else None
    trainer = trainer_for_run(workspace, args.plans, args.run_name, plan, store, split, spec=spec, config=config,
                              device=device)  # cascade stages: nnseg.training._cascade  # fmt: skip
    run_dir = workspace.run_dir(args.plans, args.configuration, args.run_name, args.fold)
    if args.val_only:
        summary = trainer.validate_finished(run_dir, reference_dir=labels)
        return f"validated: {run_dir / 'validation'} (mean Dice {summary.get('mean_dice', float('nan')):.4f})"
    return f"trained: {trainer.fit(run_dir, reference_dir=labels)}"


def _split(args: argparse.Namespace, splits_path: Path, case_ids: Sequence[str], *, write: bool) -> Split:
    """The fold: from --splits-file, else from WORK/splits_final.json (created with nnU-Net's folds if missing)."""
    from nnseg.training._split import Split, check_split_cases, split_for_fold

    fold = _fold(args.fold)
    if args.splits_file is None:
        return split_for_fold(case_ids, fold, splits_path, write=write)
    if fold == "all":
        raise ConfigError("--splits-file needs an integer fold; got 'all'.")
    split = Split.from_splits_file(args.splits_file, int(fold))
    check_split_cases(split, case_ids, args.splits_file)
    return split
