"""One hashing scheme for nnseg: SHA-256 of canonical JSON for values, SHA-256 streamed for bytes and tensors.

Plans (``preprocessing_hash``, ``content_hash``), preprocessed-store names, the fingerprint cache key and
model identities all hash through this module, so equal values give equal digests everywhere. The
canonical JSON form writes every number as a float and sorts keys, so ``[1, 2]`` and ``(1.0, 2.0)`` hash
alike; the digests of plans must never change between versions (stores on disk are keyed by them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["HASH_LENGTH", "bytes_digest", "canonical_json", "content_hash", "state_dict_digest", "to_jsonable"]

HASH_LENGTH = 16


def to_jsonable(value: Any) -> Any:
    """Return a plain JSON value: mappings to dicts, tuples to lists, NumPy values to Python values."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _numbers_as_float(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _numbers_as_float(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def canonical_json(value: Any) -> str:
    """Return a canonical JSON text of ``value`` for hashing and comparing.

    Keys are sorted, whitespace is dropped, tuples are lists and every number is written as a float, so
    values Python considers equal (``[1, 2]`` and ``(1.0, 2.0)``) give the same text.
    """
    plain = _numbers_as_float(to_jsonable(value))
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _hex(digest: Any, length: int | None) -> str:
    text: str = digest.hexdigest()
    return text if length is None else text[:length]


def content_hash(value: Any, *, length: int | None = HASH_LENGTH) -> str:
    """Return the SHA-256 (hex) of :func:`canonical_json` of ``value``.

    Args:
        value: A JSON-like value (mappings, sequences, numbers, strings, NumPy values).
        length: Hex digits to keep (16 by default; ``None`` keeps all 64).
    """
    return _hex(hashlib.sha256(canonical_json(value).encode("utf-8")), length)


def bytes_digest(data: bytes, *, length: int | None = HASH_LENGTH) -> str:
    """Return the SHA-256 (hex) of ``data``, cut to ``length`` hex digits (``None``: all 64)."""
    return _hex(hashlib.sha256(data), length)


def state_dict_digest(state_dicts: Iterable[Mapping[str, torch.Tensor]], *, length: int | None = HASH_LENGTH) -> str:
    """Return one SHA-256 (hex) over the names, dtypes, shapes and raw bytes of tensors, streamed.

    Use it to identify model weights (an ensemble's folds in order): any change of a name, a value, a
    dtype or the number of state dicts changes the digest. Tensors are read one at a time, never joined.

    Args:
        state_dicts: The state dicts, in order.
        length: Hex digits to keep (16 by default; ``None`` keeps all 64).
    """
    import torch  # the base layer imports torch only when tensors are hashed

    digest = hashlib.sha256()
    for index, state in enumerate(state_dicts):
        digest.update(f"#{index}".encode())
        for name, tensor in state.items():
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return _hex(digest, length)
