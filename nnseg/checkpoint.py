"""Training checkpoints: the typed :class:`Checkpoint` and :class:`TrainState`, their safe on-disk format, RNG state
capture, and weight-name normalisation.

A checkpoint file is a ``torch.save`` dict holding only tensors and plain Python values (dicts, lists, strings,
numbers), so it loads with ``torch.load(weights_only=True)``: loading never runs code from the file. It is
written to a temporary name and renamed into place, so a checkpoint that exists is complete.
:meth:`Checkpoint.save` and :meth:`Checkpoint.load` are the way to disk.

Layouts (``format_version``):

- 2 (written now): ``network_weights``, ``optimizer_state``, ``scheduler_state``, ``grad_scaler_state``,
  ``train_state`` (:meth:`TrainState.state_dict`), ``callback_states``, ``config``, ``plan``, ``plan_name``,
  ``dataset_spec``, ``split``, ``plans_hash``, ``world_size`` and free-form ``extra``.
- 1: the same description keys, with the progress as top-level ``step``, ``rng_state``, ``loader_state`` and
  ``extra["ema_pseudo_dice"]`` / ``extra["best_ema_pseudo_dice"]``; upgraded to 2 in memory on load.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnseg._atomic import atomic_write_bytes
from nnseg._train_state import TrainState
from nnseg.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT_VERSION",
    "REQUIRED_KEYS",
    "Checkpoint",
    "TrainState",
    "capture_rng_state",
    "load_checkpoint",
    "load_weights_only",
    "restore_rng_state",
    "save_checkpoint",
    "strip_wrapper_prefixes",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Version of the checkpoint layout this nnseg writes (and the newest it reads)."""
KNOWN_VERSIONS = (1, 2)
"""Layouts this nnseg reads (older ones are upgraded in memory)."""
REQUIRED_KEYS = ("format_version", "network_weights", "train_state")
"""Keys every checkpoint of the current layout holds; a file without them was not written completely by nnseg."""
_V1_REQUIRED_KEYS = ("format_version", "network_weights", "step")
_DESCRIPTION_KEYS = ("plan", "plan_name", "dataset_spec", "split", "config", "plans_hash")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class Checkpoint:
    """Everything a run needs to continue exactly, and what a predictor needs to rebuild the network.

    Args:
        network_weights: The plain module's ``state_dict`` (no ``module.`` / ``_orig_mod.`` prefixes).
        train_state: The run's progress.
        optimizer_state: The optimiser's ``state_dict``.
        scheduler_state: The learning-rate schedule's position (``{"next_step": s, "lr": lr(s)}``).
        grad_scaler_state: The AMP grad scaler's ``state_dict``.
        callback_states: Each callback's ``state_dict``, in the trainer's order.
        config: The :class:`~nnseg.training.TrainerConfig` in JSON form.
        plan: The configuration plan as standalone JSON (``ConfigurationPlan.to_json(standalone=True)``).
        plan_name: The configuration's name (``"3d_fullres"``).
        dataset_spec: ``DatasetSpec.to_dict()``.
        split: ``Split.to_json()``.
        plans_hash: The plan's preprocessing hash.
        world_size: Processes that trained (DDP).
        extra: Free-form plain values (for subclasses and scripts).
        format_version: Layout of the file it was read from (:data:`FORMAT_VERSION` for a new one); ``save``
            always writes the current layout.

    Example:
        >>> checkpoint = Checkpoint.load("work/runs/fold_0/checkpoint_best.pt")
        >>> checkpoint.train_state.best_step, checkpoint.train_state.best_ema_pseudo_dice
    """

    network_weights: Mapping[str, torch.Tensor]
    train_state: TrainState = field(default_factory=TrainState)
    optimizer_state: Mapping[str, Any] = field(default_factory=dict)
    scheduler_state: Mapping[str, Any] = field(default_factory=dict)
    grad_scaler_state: Mapping[str, Any] = field(default_factory=dict)
    callback_states: tuple[Mapping[str, Any], ...] = ()
    config: Mapping[str, Any] | None = None
    plan: Mapping[str, Any] | None = None
    plan_name: str | None = None
    dataset_spec: Mapping[str, Any] | None = None
    split: Mapping[str, Any] | None = None
    plans_hash: str | None = None
    world_size: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def description(self) -> dict[str, Any]:
        """What the run was (plan, plan name, dataset spec, split, config, plans hash), as ``run.json`` holds it."""
        return {key: getattr(self, key) for key in _DESCRIPTION_KEYS}

    def to_dict(self) -> dict[str, Any]:
        """The file layout (:data:`FORMAT_VERSION`): tensors and plain values only."""
        return {
            "format_version": FORMAT_VERSION, "network_weights": dict(self.network_weights),
            "optimizer_state": dict(self.optimizer_state), "scheduler_state": dict(self.scheduler_state),
            "grad_scaler_state": dict(self.grad_scaler_state), "train_state": self.train_state.state_dict(),
            "callback_states": [dict(s) for s in self.callback_states], **self.description(),
            "world_size": self.world_size, "extra": dict(self.extra),
        }  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the checkpoint to ``path`` atomically (its folder is created if needed).

        Raises:
            CheckpointError: If a value is not allowed in a safe checkpoint (checked before anything is written).
        """
        content = self.to_dict()
        _check_loadable(content, Path(path))
        buffer = io.BytesIO()
        torch.save(content, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Load a checkpoint safely (``weights_only=True``), upgrading an older layout in memory.

        Raises:
            CheckpointError: If the file is missing, truncated, corrupted, holds pickled objects, is not an nnseg
                checkpoint, or has a format version this nnseg does not know (naming the file).
        """
        path = Path(path)
        content = _read(path, map_location)
        version = content["format_version"]
        if version == 1:
            content = _upgrade_v1(content, path)
            logger.info("checkpoint %s has format_version 1; upgraded to %d in memory", path, FORMAT_VERSION)
        return cls.from_dict(content, path=path, format_version=version)

    @classmethod
    def from_dict(cls, content: Mapping[str, Any], *, path: Path, format_version: int = FORMAT_VERSION) -> Checkpoint:
        """Build a checkpoint from the current file layout (:meth:`to_dict`); ``path`` names it in errors.

        Raises:
            CheckpointError: If a key is missing or a value has the wrong type.
        """
        missing = [k for k in REQUIRED_KEYS if k not in content]
        if missing:
            raise CheckpointError(f"checkpoint {path} lacks key(s) {missing}; it was not written completely by nnseg.")
        try:
            _expect(content, path, dict, "network_weights", "train_state")
            _expect(content, path, dict, "optimizer_state", "scheduler_state", "grad_scaler_state", "extra", none=True)
            _expect(content, path, list, "callback_states", none=True)
            train_state = TrainState.from_state_dict(content["train_state"])
        except (ConfigError, AttributeError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path}: {err} The file was not written by this nnseg.") from None
        return cls(
            network_weights=content["network_weights"], train_state=train_state,
            optimizer_state=content.get("optimizer_state") or {}, scheduler_state=content.get("scheduler_state") or {},
            grad_scaler_state=content.get("grad_scaler_state") or {},
            callback_states=tuple(content.get("callback_states") or ()),
            **{key: content.get(key) for key in _DESCRIPTION_KEYS}, world_size=int(content.get("world_size", 1)),
            extra=content.get("extra") or {}, format_version=format_version,
        )  # fmt: skip

    def legacy_dict(self) -> dict[str, Any]:
        """The checkpoint in layout 1 (what the deprecated :func:`load_checkpoint` returns)."""
        state = self.train_state
        content = {key: value for key, value in self.to_dict().items() if key not in ("train_state", "scheduler_state")}
        extra = {**self.extra, "ema_pseudo_dice": state.ema_pseudo_dice,
                 "best_ema_pseudo_dice": state.best_ema_pseudo_dice}  # fmt: skip
        return {**content, "format_version": 1, "step": state.step, "rng_state": state.rng_state,
                "loader_state": {"seed": state.seed, "next_step": state.step}, "extra": extra}  # fmt: skip


def _expect(content: Mapping[str, Any], path: Path, kind: type, *keys: str, none: bool = False) -> None:
    for key in keys:
        value = content.get(key)
        if not isinstance(value, kind) and not (none and value is None):
            raise TypeError(f"{key} is a {type(value).__name__}, expected a {kind.__name__}.")


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    """Load the raw dict safely and check its format version (known: 1 and 2)."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; expected a file written by nnseg's trainer.")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, zipfile errors...
        if _is_pickled_object(err):
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects that a safe load (weights_only=True) refuses; "
                "nnseg never writes such files, so it was not written by nnseg (or was altered). It is not loaded: "
                "loading it unsafely could run code from the file."
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "it is truncated, corrupted or not a safe nnseg checkpoint. Delete it to fall back to an older "
            "checkpoint or to start again."
        ) from err
    if not isinstance(content, dict) or "format_version" not in content:
        raise CheckpointError(f"checkpoint {path} is not an nnseg checkpoint (no 'format_version' key).")
    version = content["format_version"]
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {version}; this nnseg reads up to {FORMAT_VERSION}. Upgrade nnseg "
            "(pip install -U nnseg) to load it."
        )
    if version not in KNOWN_VERSIONS or isinstance(version, bool):
        raise CheckpointError(
            f"checkpoint {path} has format_version {version!r}, which no nnseg release wrote (known: "
            f"{list(KNOWN_VERSIONS)}); refusing to load it. The file is damaged or not an nnseg checkpoint."
        )
    return content


def _is_pickled_object(err: Exception) -> bool:
    """Whether a safe load refused a class or function to import (pickled objects), not damaged bytes."""
    text = str(err)
    return "Unsupported global" in text or ("Weights only load failed" in text and "GLOBAL" in text)


def _upgrade_v1(content: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """Layout 1 -> 2: gather the progress (step, RNG, loader, EMA) into ``train_state``."""
    missing = [k for k in _V1_REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks key(s) {missing}; it was not written completely by nnseg.")
    try:
        _expect(content, path, dict, "extra", "config", "loader_state", none=True)
    except TypeError as err:
        raise CheckpointError(f"checkpoint {path}: {err} The file was not written by this nnseg.") from None
    step = content["step"]
    iterations = (content.get("config") or {}).get("iterations_per_epoch")
    extra = dict(content.get("extra") or {})
    loader = content.get("loader_state") or {"seed": (content.get("config") or {}).get("seed", 0)}
    train_state = {
        "step": step, "epoch": step // iterations if isinstance(iterations, int) and iterations > 0 else 0,
        "ema_pseudo_dice": extra.pop("ema_pseudo_dice", math.nan),
        "best_ema_pseudo_dice": extra.pop("best_ema_pseudo_dice", -math.inf),
        "loader": loader, "rng_state": content.get("rng_state"),
    }  # fmt: skip
    upgraded = {k: v for k, v in content.items() if k not in ("step", "rng_state", "loader_state", "extra")}
    return {**upgraded, "format_version": FORMAT_VERSION, "train_state": train_state,
            "scheduler_state": {"next_step": step}, "extra": extra}  # fmt: skip


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Deprecated: write a layout-1 ``payload`` dict to ``path``; use :meth:`Checkpoint.save`.

    Raises:
        CheckpointError: If ``network_weights`` or ``step`` is missing or a value is not allowed in a safe checkpoint.
    """
    warnings.warn("nnseg.checkpoint.save_checkpoint is deprecated; use nnseg.checkpoint.Checkpoint(...).save(path).",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    content = {**payload, "format_version": 1}
    missing = [k for k in _V1_REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(
            f"checkpoint {path}: missing key(s) {missing}; expected at least {list(_V1_REQUIRED_KEYS)}."
        )
    _check_loadable(content, Path(path))
    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Deprecated: load a checkpoint as a layout-1 dict; use :meth:`Checkpoint.load`.

    Raises:
        CheckpointError: As :meth:`Checkpoint.load`.
    """
    warnings.warn("nnseg.checkpoint.load_checkpoint is deprecated; use nnseg.checkpoint.Checkpoint.load(path).",
                  DeprecationWarning, stacklevel=2)  # fmt: skip
    return Checkpoint.load(path, map_location=map_location).legacy_dict()


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``module.`` (DDP) and ``_orig_mod.`` (``torch.compile``) prefixes from weight names."""
    cleaned = {}
    for name, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, changed = name[len(prefix) :], True
        cleaned[name] = value
    return cleaned


def load_weights_only(path: Path, *, describe: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)``, with the NumPy scalar types nnU-Net's checkpoints hold allowed.

    Nothing pickled is executed: anything beyond tensors, plain values and those NumPy types is refused.

    Args:
        path: The file.
        describe: How messages name the file (``"nnU-Net checkpoint"``, ``"pretrained weights"``).
        fix: The last sentence of the message: what to do about an unreadable file.

    Raises:
        CheckpointError: ``"<describe> <path> cannot be loaded safely (<reason>); <fix>"``.
    """
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{describe} {path} cannot be loaded safely ({first_line}); {fix}") from err


def _numpy_safe_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def capture_rng_state() -> dict[str, Any]:
    """Return the state of Python's, NumPy's legacy global and torch's (CPU and CUDA) random generators.

    The result holds tensors and plain values only, so it can be stored in a safe checkpoint.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore generators from :func:`capture_rng_state` output."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_SAFE_LEAVES = (torch.Tensor, str, int, float, bool, type(None), torch.dtype, torch.device, torch.Size)


def _check_loadable(content: Any, path: Path, where: str = "payload") -> None:
    """Refuse to write what a safe load would refuse (e.g. an object that needs unpickling).

    Walks the payload instead of loading the serialised bytes back, so saving costs no second pass over
    the weights.
    """
    if isinstance(content, Mapping):
        for key, value in content.items():
            if not isinstance(key, str | int):
                raise CheckpointError(_unsafe_message(path, f"{where} key {key!r}", key))
            _check_loadable(value, path, f"{where}[{key!r}]")
    elif isinstance(content, list | tuple):
        for index, value in enumerate(content):
            _check_loadable(value, path, f"{where}[{index}]")
    elif not isinstance(content, _SAFE_LEAVES):
        raise CheckpointError(_unsafe_message(path, where, content))


def _unsafe_message(path: Path, where: str, value: Any) -> str:
    return (
        f"checkpoint {path}: the payload holds a value that a safe load (weights_only=True) refuses: {where} is a "
        f"{type(value).__module__}.{type(value).__qualname__}. Store tensors and plain Python values (dict, list, "
        "str, int, float) only."
    )
