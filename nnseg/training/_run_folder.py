"""The run folder of one training: its checkpoints, the files describing the run, and resuming from them.

```
run_dir/
  run.json                    plan, dataset spec, split and config of the run (written at the start)
  checkpoint_latest.pt        every ``checkpoint_every_epochs`` epochs (removed once the final one exists)
  checkpoint_epoch_<k>.pt     the last ``keep_checkpoints`` periodic states when it is > 1 (the newest is the
                              latest one, hard-linked)
  checkpoint_best.pt          best EMA of the validation pseudo-Dice
  checkpoint_final.pt         end of the schedule
  metrics.jsonl  progress.png (callbacks)
```

Every file is written atomically, so the folder is never left half-written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nnseg._atomic import atomic_write_json
from nnseg.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    strip_wrapper_prefixes,
)
from nnseg.errors import CheckpointError, ConfigError
from nnseg.training._ddp import GLOBAL_RNG_LOCK

if TYPE_CHECKING:
    from nnseg.dataset import DatasetSpec
    from nnseg.planning import ConfigurationPlan
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._trainer import Trainer

__all__ = ["RESUMABLE_CONFIG_CHANGES", "RunFolder", "check_store", "resolve_device"]

logger = logging.getLogger(__name__)

# Config fields that may differ between a checkpoint and the resuming run without changing the result.
RESUMABLE_CONFIG_CHANGES = frozenset(
    {"num_loader_workers", "checkpoint_every_epochs", "keep_checkpoints", "compile", "cudnn_benchmark",
     "final_validation"}
)


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` and check that it exists on this machine.

    Raises:
        ConfigError: For an unknown device string, CUDA without a CUDA device, or an index beyond the GPUs.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1'.") from err
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {device!r}: this machine has no CUDA device; use device='cpu'.")
        if parsed.index is not None and parsed.index >= count:
            raise ConfigError(f"device {device!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1}).")
    elif parsed.type not in ("cpu", "mps"):
        raise ConfigError(f"device {device!r}: unsupported device type {parsed.type!r}; expected 'cpu' or 'cuda[:N]'.")
    return parsed


def check_store(store: PreprocessedStore, plan: ConfigurationPlan, spec: DatasetSpec) -> None:
    """Refuse a store that is missing or was preprocessed for other plans.

    Raises:
        ConfigError: If ``store`` has no manifest.
        StoreError: If its preprocessing differs from ``plan``'s (naming the differing fields).
    """
    from nnseg.preprocessing import StoreManifest
    from nnseg.preprocessing._store_manifest import check_compatible

    existing = store.manifest()
    if existing is None:
        raise ConfigError(
            f"{store.root} is not a preprocessed store (no store.json); preprocess the dataset for this plan first "
            "(nnseg.preprocess_dataset or `nnseg preprocess`)."
        )
    check_compatible(existing, StoreManifest.for_plan(plan, spec), plan, store.root)


@dataclass(frozen=True)
class RunFolder:
    """Paths and checkpoint logic of one run folder."""

    root: Path

    @property
    def latest_path(self) -> Path:
        """``checkpoint_latest.pt``."""
        return self.root / "checkpoint_latest.pt"

    @property
    def best_path(self) -> Path:
        """``checkpoint_best.pt``."""
        return self.root / "checkpoint_best.pt"

    @property
    def final_path(self) -> Path:
        """``checkpoint_final.pt``."""
        return self.root / "checkpoint_final.pt"

    def load(self, path: Path) -> dict[str, Any]:
        """Load a checkpoint of this folder."""
        return load_checkpoint(path)

    def start(self, trainer: Trainer) -> None:
        """Resume from ``checkpoint_latest.pt`` if present (after checking it fits), then write ``run.json``.

        Raises:
            CheckpointError: If the checkpoint, or the ``run.json`` of a run killed before its first
                checkpoint, describes a different run, or the checkpoint is damaged or of another network.
        """
        if self.latest_path.is_file():
            checkpoint = self.load(self.latest_path)
            self.check_compatible(checkpoint, trainer)
            _restore(checkpoint, trainer)
            logger.info("resuming %s at step %d", self.root, trainer.step)
        elif self.run_json_path.is_file():
            self._check_run_json(trainer)
        if trainer.distributed.is_main:
            atomic_write_json(self.run_json_path, _describe(trainer))

    @property
    def run_json_path(self) -> Path:
        """``run.json``."""
        return self.root / "run.json"

    def check_compatible(self, checkpoint: dict[str, Any], trainer: Trainer, *, what: str = "a checkpoint") -> None:
        """Refuse a checkpoint written for another plan, dataset, split or config.

        Args:
            checkpoint: The loaded checkpoint (or ``run.json``).
            trainer: The trainer about to use the folder.
            what: How the message names ``checkpoint``.

        Raises:
            CheckpointError: Naming every field that differs, its value in the folder and in this run, and how
                to proceed.
        """
        described = _json_form(_describe(trainer))
        different: list[str] = []
        for key in ("plan", "dataset_spec", "split", "config"):
            saved, now = _json_form(checkpoint.get(key)), described[key]
            if key == "config":
                saved = {k: v for k, v in (saved or {}).items() if k not in RESUMABLE_CONFIG_CHANGES}
                now = {k: v for k, v in now.items() if k not in RESUMABLE_CONFIG_CHANGES}
            different += _differences(key, saved, now)
        if different:
            raise CheckpointError(
                f"the run folder {self.root} holds {what} of a different run: {'; '.join(different[:8])}"
                f"{' ...' if len(different) > 8 else ''}. Use a new run folder, or the same plan, dataset, split "
                "and config to resume this one."
            )

    def _check_run_json(self, trainer: Trainer) -> None:
        try:
            described = json.loads(self.run_json_path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"{self.run_json_path} cannot be read ({err}); it is not an nnseg run description. Use a new run "
                "folder, or delete the file if that run is abandoned."
            ) from err
        try:
            self.check_compatible(described, trainer, what="run.json (no checkpoint yet)")
        except CheckpointError as err:
            raise CheckpointError(f"{err} Delete {self.run_json_path} if that run is abandoned.") from None

    def after_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        """Write the periodic and the best checkpoint as the config asks."""
        epoch = metrics["epoch"]
        config = trainer.config
        ema = trainer.ema_pseudo_dice
        if not math.isnan(ema) and ema > trainer.best_ema_pseudo_dice:
            trainer.best_ema_pseudo_dice = ema
            self.save(self.best_path, trainer)
        finished = trainer.step >= config.total_steps
        if (epoch + 1) % config.checkpoint_every_epochs == 0 and not finished:
            self.save(self.latest_path, trainer)
            if config.keep_checkpoints > 1 and trainer.distributed.is_main:
                self._archive_latest(self.root / f"checkpoint_epoch_{epoch + 1:05d}.pt", trainer)
                self._prune(config.keep_checkpoints)

    def save(self, path: Path, trainer: Trainer) -> None:
        """Write the trainer's complete state to ``path`` atomically (on rank 0 only)."""
        if not trainer.distributed.is_main:
            return
        with GLOBAL_RNG_LOCK:
            rng_state = capture_rng_state()
        payload = {
            **_describe(trainer),
            "network_weights": strip_wrapper_prefixes(trainer.network.state_dict()),
            "optimizer_state": trainer.optimizer.state_dict(),
            "grad_scaler_state": trainer.grad_scaler.state_dict(),
            "step": trainer.step,
            "world_size": trainer.distributed.world_size,
            "rng_state": rng_state,
            "loader_state": {"seed": trainer.config.seed, "next_step": trainer.step},
            "callback_states": [c.state_dict() for c in trainer.callbacks],
            "extra": {"ema_pseudo_dice": trainer.ema_pseudo_dice, "best_ema_pseudo_dice": trainer.best_ema_pseudo_dice},
        }
        save_checkpoint(path, payload)

    def remove_latest(self, trainer: Trainer) -> None:
        """Remove ``checkpoint_latest.pt`` once the final checkpoint exists."""
        if trainer.distributed.is_main:
            self.latest_path.unlink(missing_ok=True)

    def _archive_latest(self, path: Path, trainer: Trainer) -> None:
        """Keep the state just saved as ``checkpoint_latest.pt`` under ``path`` too (a hard link, else a copy)."""
        temporary = path.with_name(f".{path.name}.link")
        try:
            temporary.unlink(missing_ok=True)
            os.link(self.latest_path, temporary)
            os.replace(temporary, path)
        except OSError:  # no hard links on this file system
            temporary.unlink(missing_ok=True)
            self.save(path, trainer)

    def _prune(self, keep: int) -> None:
        periodic = sorted(self.root.glob("checkpoint_epoch_*.pt"))
        for path in periodic[: max(len(periodic) - keep, 0)]:
            path.unlink(missing_ok=True)


def _json_form(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so a checkpoint compares with ``run.json``."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return value


def _differences(where: str, saved: Any, now: Any) -> list[str]:
    """``"where.key: folder X, this run Y"`` for every differing key of two dicts (one level deep)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        keys = sorted(set(saved) | set(now), key=str)
        return [_difference(f"{where}.{k}", saved.get(k), now.get(k)) for k in keys if saved.get(k) != now.get(k)]
    return [] if saved == now else [_difference(where, saved, now)]


def _difference(where: str, saved: Any, now: Any) -> str:
    def short(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    return f"{where} is {short(saved)} in the folder, {short(now)} in this run"


def _describe(trainer: Trainer) -> dict[str, Any]:
    return {
        "plan": trainer.plan.to_json(standalone=True),  # the predictor rebuilds the plan from it
        "plan_name": trainer.plan.name,
        "dataset_spec": trainer.spec.to_dict(),
        "split": trainer.split.to_json(),
        "config": trainer.config.to_json(),
        "plans_hash": trainer.plan.preprocessing_hash(),
    }


def _restore(checkpoint: dict[str, Any], trainer: Trainer) -> None:
    try:
        # a network passed in already compiled saves its weights without "_orig_mod.": load into the module
        getattr(trainer.network, "_orig_mod", trainer.network).load_state_dict(checkpoint["network_weights"])
        trainer.optimizer.load_state_dict(checkpoint["optimizer_state"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(
            f"the checkpoint's weights do not fit the network ({str(err).splitlines()[0]}); it was written for a "
            "different network. Use a new run folder."
        ) from err
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != trainer.distributed.world_size:
        logger.warning(
            "resuming a run saved with %d process(es) on %d: it continues with the same global batch, but the "
            "per-rank data streams differ, so it will not equal an uninterrupted run bitwise",
            saved_world, trainer.distributed.world_size,
        )  # fmt: skip
    if checkpoint.get("grad_scaler_state"):
        trainer.grad_scaler.load_state_dict(checkpoint["grad_scaler_state"])
    trainer.step = int(checkpoint["step"])
    with GLOBAL_RNG_LOCK:
        restore_rng_state(checkpoint["rng_state"])
    extra = checkpoint.get("extra", {})
    trainer.ema_pseudo_dice = float(extra.get("ema_pseudo_dice", math.nan))
    trainer.best_ema_pseudo_dice = float(extra.get("best_ema_pseudo_dice", -math.inf))
    states = checkpoint.get("callback_states", [])
    if len(states) != len(trainer.callbacks):
        raise ConfigError(
            f"the checkpoint holds the state of {len(states)} callback(s) but the trainer has "
            f"{len(trainer.callbacks)}; resume with the same callbacks."
        )
    for callback, state in zip(trainer.callbacks, states, strict=True):
        callback.load_state_dict(state)
