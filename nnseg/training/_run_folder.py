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
  .train.lock                 while a process trains here (pid, host, start time; rank 0 under DDP)
```

Every file is written atomically, so the folder is never left half-written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nnseg._atomic import atomic_write_json
from nnseg._lock import WorkLock
from nnseg.checkpoint import Checkpoint
from nnseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from nnseg.dataset import DatasetSpec
    from nnseg.planning import ConfigurationPlan
    from nnseg.preprocessing import PreprocessedStore
    from nnseg.training._config import TrainerConfig
    from nnseg.training._split import Split

__all__ = ["RESUMABLE_CONFIG_CHANGES", "RunFolder", "check_store", "cudnn_benchmark", "describe_run", "resolve_device"]

logger = logging.getLogger(__name__)

# Config fields that may differ between a checkpoint and the resuming run without changing the result.
RESUMABLE_CONFIG_CHANGES = frozenset(
    {
        "num_loader_workers",
        "checkpoint_every_epochs",
        "keep_checkpoints",
        "compile",
        "cudnn_benchmark",
        "final_validation",
        "save_probabilities",
        "validate_with_best",
        "pretrained_weights",
    }
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


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool, device: torch.device) -> Iterator[None]:
    """Set ``cudnn.benchmark`` for a CUDA run and restore the previous value after it (CPU runs touch nothing).

    The flag is process-global in torch: two CUDA trainers in threads of one process should use the same value.
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def describe_run(plan: ConfigurationPlan, spec: DatasetSpec, split: Split, config: TrainerConfig) -> dict[str, Any]:
    """What a run is (plan as standalone JSON, plan name, dataset spec, split, config, plans hash): ``run.json``."""
    return {
        "plan": plan.to_json(standalone=True),  # the predictor rebuilds the plan from it
        "plan_name": plan.name, "dataset_spec": spec.to_dict(), "split": split.to_json(),
        "config": config.to_json(), "plans_hash": plan.preprocessing_hash(),
    }  # fmt: skip


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
    """Paths, retention and compatibility checks of one run folder; it reads and writes :class:`Checkpoint` values.

    Args:
        root: The run folder.
        checkpoint_every_epochs: Period of ``checkpoint_latest.pt``.
        keep_checkpoints: Periodic states kept as ``checkpoint_epoch_<k>.pt`` when > 1.
        is_main: Whether this process writes files (rank 0 under DDP).
    """

    root: Path
    checkpoint_every_epochs: int = 1
    keep_checkpoints: int = 1
    is_main: bool = True

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

    @property
    def run_json_path(self) -> Path:
        """``run.json``."""
        return self.root / "run.json"

    @property
    def lock_path(self) -> Path:
        """``.train.lock``: held by the process training in this folder."""
        return self.root / ".train.lock"

    def lock(self) -> contextlib.AbstractContextManager[Any]:
        """The folder's :class:`~nnseg._lock.WorkLock` on the main process (a no-op context on the others).

        A second trainer of the same folder gets a ``LockError`` naming the first (pid, host, start time);
        the lock of a dead process of this host is taken over with a logged note. A folder created for the lock
        and left empty (a run refused before writing anything) is removed again.
        """
        return self._locked() if self.is_main else contextlib.nullcontext()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        created = [p for p in (self.root, *self.root.parents) if not p.exists()]  # innermost first
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with WorkLock(self.lock_path, f"training in run folder {self.root}"):
                yield
        finally:
            for folder in created:
                if any(folder.iterdir()):
                    break
                folder.rmdir()

    def load(self, path: Path) -> Checkpoint:
        """Load a checkpoint of this folder."""
        return Checkpoint.load(path)

    def start(self, description: Mapping[str, Any]) -> Checkpoint | None:
        """The checkpoint to resume from (``checkpoint_latest.pt`` if present and compatible), then write ``run.json``.

        Args:
            description: The run about to use the folder (``Trainer.describe()``).

        Returns:
            The latest checkpoint, or None for a new run.

        Raises:
            CheckpointError: If the checkpoint, or the ``run.json`` of a run killed before its first
                checkpoint, describes a different run, or the checkpoint is damaged.
        """
        checkpoint = None
        if self.latest_path.is_file():
            try:
                checkpoint = self.load(self.latest_path)
            except CheckpointError as err:
                raise CheckpointError(f"cannot resume the run in {self.root}: {err} {self._fallback()}") from err
            self.check_compatible(checkpoint.description(), description)
        elif self.run_json_path.is_file():
            self._check_run_json(description)
        if self.is_main:
            atomic_write_json(self.run_json_path, dict(description))
        return checkpoint

    def _fallback(self) -> str:
        """How to go on without a damaged ``checkpoint_latest.pt``: an older periodic checkpoint, or from step 0."""
        latest = self.latest_path.stat()
        older = [p for p in sorted(self.root.glob("checkpoint_epoch_*.pt"), reverse=True)
                 if not os.path.samestat(p.stat(), latest)]  # fmt: skip
        if older:
            return (
                f"To resume from the older state {older[0].name}, copy it over checkpoint_latest.pt "
                f"(cp {older[0]} {self.latest_path}); to start the run over, delete checkpoint_latest.pt."
            )
        return f"No older checkpoint_epoch_*.pt exists: delete {self.latest_path} to start the run over from step 0."

    def check_compatible(
        self, saved: Mapping[str, Any] | None, description: Mapping[str, Any], *, what: str = "a checkpoint"
    ) -> None:
        """Refuse a checkpoint (or ``run.json``) written for another plan, dataset, split or config.

        Args:
            saved: The description stored in the folder (``Checkpoint.description()`` or ``run.json``).
            description: The run about to use the folder.
            what: How the message names ``saved``.

        Raises:
            CheckpointError: Naming every field that differs, its value in the folder and in this run, and how
                to proceed.
        """
        described = _json_form(dict(description))
        different: list[str] = []
        for key in ("plan", "dataset_spec", "split", "config"):
            before, now = _json_form((saved or {}).get(key)), described.get(key)
            if key == "config":
                before = {k: v for k, v in _with_config_defaults(before).items() if k not in RESUMABLE_CONFIG_CHANGES}
                now = {k: v for k, v in _with_config_defaults(now).items() if k not in RESUMABLE_CONFIG_CHANGES}
            different += _differences(key, before, now)
        if different:
            raise CheckpointError(
                f"the run folder {self.root} holds {what} of a different run: {'; '.join(different[:8])}"
                f"{' ...' if len(different) > 8 else ''}. Use a new run folder, or the same plan, dataset, split "
                "and config to resume this one."
            )

    def _check_run_json(self, description: Mapping[str, Any]) -> None:
        try:
            saved = json.loads(self.run_json_path.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"{self.run_json_path} cannot be read ({err}); it is not an nnseg run description. Use a new run "
                "folder, or delete the file if that run is abandoned."
            ) from err
        try:
            self.check_compatible(saved if isinstance(saved, dict) else {}, description,
                                  what="run.json (no checkpoint yet)")  # fmt: skip
        except CheckpointError as err:
            raise CheckpointError(f"{err} Delete {self.run_json_path} if that run is abandoned.") from None

    def after_epoch(self, checkpoint: Callable[[], Checkpoint], *, epoch: int, best: bool, finished: bool) -> None:
        """Write the best and the periodic checkpoint as configured.

        Args:
            checkpoint: Builds the state to save (called at most once, only when something is written).
            epoch: Index of the epoch just finished (0-based).
            best: Whether it reached the best EMA pseudo-Dice.
            finished: Whether the schedule is done (the final checkpoint follows: no periodic one).
        """
        periodic = (epoch + 1) % self.checkpoint_every_epochs == 0 and not finished
        if not self.is_main or not (best or periodic):
            return
        state = checkpoint()
        if best:
            self.save(self.best_path, state)
        if periodic:
            self.save(self.latest_path, state)
            if self.keep_checkpoints > 1:
                self._archive_latest(self.root / f"checkpoint_epoch_{epoch + 1:05d}.pt", state)
                self._prune(self.keep_checkpoints)

    def save_latest(self, checkpoint: Callable[[], Checkpoint]) -> None:
        """Write ``checkpoint_latest.pt`` now (a stop between periodic checkpoints), on the main process."""
        if self.is_main:
            checkpoint().save(self.latest_path)

    def save(self, path: Path, checkpoint: Checkpoint) -> None:
        """Write ``checkpoint`` to ``path`` atomically (on the main process only)."""
        if self.is_main:
            checkpoint.save(path)

    def save_final(self, checkpoint: Callable[[], Checkpoint]) -> Path:
        """Write ``checkpoint_final.pt`` (built by ``checkpoint`` on the main process), then remove the latest one."""
        if self.is_main:
            checkpoint().save(self.final_path)
        self.remove_latest()
        return self.final_path

    def remove_latest(self) -> None:
        """Remove ``checkpoint_latest.pt`` once the final checkpoint exists."""
        if self.is_main:
            self.latest_path.unlink(missing_ok=True)

    def _archive_latest(self, path: Path, checkpoint: Checkpoint) -> None:
        """Keep the state just saved as ``checkpoint_latest.pt`` under ``path`` too (a hard link, else a copy)."""
        temporary = path.with_name(f".{path.name}.link")
        try:
            temporary.unlink(missing_ok=True)
            os.link(self.latest_path, temporary)
            os.replace(temporary, path)
        except OSError:  # no hard links on this file system
            temporary.unlink(missing_ok=True)
            self.save(path, checkpoint)

    def _prune(self, keep: int) -> None:
        periodic = sorted(self.root.glob("checkpoint_epoch_*.pt"))
        for path in periodic[: max(len(periodic) - keep, 0)]:
            path.unlink(missing_ok=True)


def _with_config_defaults(config: Any) -> dict[str, Any]:
    """A saved config with the fields added after it was written at their defaults (they did not exist then)."""
    import dataclasses

    from nnseg.training._config import TrainerConfig

    if not isinstance(config, dict):
        return {}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainerConfig) if f.name not in _OLDER_DEFAULTS}
    return _json_form({**defaults, **_OLDER_DEFAULTS, **config})


# Fields whose default changed: a description without the field was written when the old default applied.
_OLDER_DEFAULTS: dict[str, Any] = {"replay_validation_batches": True}


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
