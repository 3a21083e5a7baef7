"""``nnseg train WORK -c CONFIG -f FOLD``: train one fold of one configuration of a work folder.

Reads ``WORK/plans/<plans>.json``, ``WORK/dataset.json`` and the store ``WORK/preprocessed/<store_name>/``
written by ``nnseg preprocess``; trains into ``WORK/runs/<plans>__<configuration>__<run_name>/fold_<k>/``.
Running the same command again resumes exactly from the last checkpoint (or does nothing once finished).

Multi-GPU / multi-node: launch with ``torchrun --nproc-per-node N nnseg train ...`` (any ``torchrun`` options);
this module reads torchrun's ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``, initialises the process group
(NCCL on CUDA, gloo on CPU) and gives each process ``cuda:<LOCAL_RANK>``. The library itself never reads
environment variables.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nnseg.errors import ConfigError

__all__ = ["register", "run_train"]


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
    parser.add_argument("--iterations-per-epoch", type=int, default=250, metavar="N", help="default 250")
    parser.add_argument("--num-epochs", type=int, default=1000, metavar="N", help="default 1000")
    parser.add_argument("--val-iterations", type=int, default=50, metavar="N", help="pseudo-Dice batches (50)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--num-workers", type=int, default=2, metavar="N", help="data loader processes (2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, sampling, augmentation")
    parser.add_argument("--lr-schedule", choices=("per_step", "per_epoch"), default="per_step",
                        help="poly decay per step (default) or per epoch (nnU-Net's staircase)")
    parser.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS",
                        help="write checkpoint_latest every EPOCHS epochs (1)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="cudnn autotuning (faster, not bitwise)")
    parser.add_argument("--compile", action="store_true", help="wrap the network with torch.compile")
    parser.add_argument("--no-final-validation", action="store_true", help="skip the full-case validation")
    parser.set_defaults(handler=run_train)


def _torchrun() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment; ``(0, 0, 1)`` outside torchrun."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as err:
        raise ConfigError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers (set by torchrun): {err}.") from err


def _fold(value: str) -> int | str:
    if value == "all":
        return "all"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"-f/--fold must be an integer or 'all'; got {value!r}.") from None


def run_train(args: argparse.Namespace) -> int:
    """Train (or resume, or do nothing for a finished run); return the exit code."""
    import torch
    import torch.distributed as dist

    rank, local_rank, world_size = _torchrun()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and device.startswith("cuda"):
        device = f"cuda:{local_rank}"
    if world_size > 1:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world_size)
    try:
        final = _train(args, device)
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank == 0:
        print(f"trained: {final}")
    return 0


def _train(args: argparse.Namespace, device: str) -> Path:
    from nnseg.dataset import DatasetSpec
    from nnseg.planning import Plans
    from nnseg.preprocessing import PreprocessedStore, store_name
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split
    from nnseg.training._trainer import Trainer
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
    fold = _fold(args.fold)
    if args.splits_file is not None:
        if fold == "all":
            raise ConfigError("--splits-file needs an integer fold; got 'all'.")
        split = Split.from_splits_file(args.splits_file, int(fold))
    else:
        split = Split.kfold(store.case_ids(), fold)  # type: ignore[arg-type]
    config = TrainerConfig(iterations_per_epoch=args.iterations_per_epoch, num_epochs=args.num_epochs,
                           val_iterations_per_epoch=args.val_iterations, num_loader_workers=args.num_workers,
                           seed=args.seed, final_validation=not args.no_final_validation,
                           lr_schedule=args.lr_schedule, checkpoint_every_epochs=args.checkpoint_every,
                           cudnn_benchmark=args.cudnn_benchmark, compile=args.compile)  # fmt: skip
    labels = None
    if workspace.manifest_path.is_file():
        labels = workspace.raw_dataset_dir() / "labelsTr"
    trainer = Trainer(plan, store, split, spec=spec, config=config, device=device)
    run_dir = workspace.run_dir(args.plans, args.configuration, args.run_name, args.fold)
    return trainer.fit(run_dir, reference_dir=labels)
