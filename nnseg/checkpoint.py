"""Training checkpoints: atomic save, safe load, RNG state capture, and weight-name normalisation.

A checkpoint is a ``torch.save`` file holding only tensors and plain Python values (dicts, lists, strings,
numbers), so it loads with ``torch.load(weights_only=True)``: loading never runs code from the file. It is
written to a temporary name and renamed into place, so a checkpoint that exists is complete.

Keys written by nnseg (``FORMAT_VERSION`` 1): ``format_version``, ``network_weights``, ``optimizer_state``,
``grad_scaler_state``, ``step``, ``rng_state``, ``loader_state``, ``callback_states``, ``config``, ``plan``,
``dataset_spec``, ``plans_hash`` and free-form ``extra``.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nnseg._atomic import atomic_write_bytes
from nnseg.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "REQUIRED_KEYS",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "strip_wrapper_prefixes",
]

FORMAT_VERSION = 1
"""Version of the checkpoint layout this nnseg writes (and the newest it reads)."""
REQUIRED_KEYS = ("format_version", "network_weights", "step")
"""Keys every nnseg checkpoint holds; a file without them was not written completely by nnseg."""
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (plus ``format_version``) to ``path`` atomically.

    Args:
        path: The checkpoint file (``.pt``); its folder is created if needed.
        payload: Tensors and plain Python values only; must hold ``network_weights`` and ``step``.

    Raises:
        CheckpointError: If a required key is missing or a value is not allowed in a safe checkpoint.
    """
    content = {"format_version": FORMAT_VERSION, **payload}
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing key(s) {missing}; expected at least {list(REQUIRED_KEYS)}.")
    _check_loadable(content, Path(path))
    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (safely: ``weights_only=True``).

    Raises:
        CheckpointError: If the file is missing, truncated, corrupted, not an nnseg checkpoint, or from a newer
            format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; expected a file written by nnseg's trainer.")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, pickle.UnpicklingError, EOFError, zipfile errors...
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "it is truncated, corrupted or not a safe nnseg checkpoint. Delete it to fall back to an older "
            "checkpoint or to start again."
        ) from err
    if not isinstance(content, dict) or "format_version" not in content:
        raise CheckpointError(f"checkpoint {path} is not an nnseg checkpoint (no 'format_version' key).")
    if content["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {content['format_version']}; this nnseg reads up to "
            f"{FORMAT_VERSION}. Upgrade nnseg."
        )
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks key(s) {missing}; it was not written completely by nnseg.")
    return content


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
