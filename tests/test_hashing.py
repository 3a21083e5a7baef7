"""nnseg._hashing: one content hash for plans, stores and caches; values pinned across versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nnseg._hashing import bytes_digest, canonical_json, content_hash, state_dict_digest
from nnseg.planning import Plans

FIXTURE = Path(__file__).parent / "planning" / "data" / "nnUNetPlans.json"


def test_preprocessing_hash_is_unchanged_since_earlier_versions() -> None:
    # Computed with the code before nnseg._hashing existed: stores written then must still match.
    plans = Plans.load(FIXTURE)
    hashes = {name: plans[name].preprocessing_hash() for name in plans.configuration_names}
    assert hashes == {
        "2d": "536266a8b4cf095b",
        "3d_lowres": "2468ca721661b1fb",
        "3d_fullres": "cb1d212afaa58db0",
        "3d_cascade_fullres": "cb1d212afaa58db0",
    }
    assert plans.content_hash() == "d03a0557d087bbc7"


def test_content_hash_ignores_number_type_tuple_and_key_order() -> None:
    assert content_hash({"b": [1, 2], "a": 3}) == content_hash({"a": 3.0, "b": (1.0, 2.0)})
    assert content_hash({"a": np.float32(0.5)}) == content_hash({"a": 0.5})
    assert content_hash({"a": 1}) != content_hash({"a": 2})
    assert canonical_json({"b": 1, "a": [True]}) == '{"a":[true],"b":1.0}'


def test_content_hash_length() -> None:
    assert len(content_hash([1])) == 16
    assert len(content_hash([1], length=None)) == 64
    assert content_hash([1], length=None).startswith(content_hash([1]))


def test_bytes_digest_is_sha256() -> None:
    assert bytes_digest(b"") == "e3b0c44298fc1c14"
    assert len(bytes_digest(b"x", length=None)) == 64


def test_state_dict_digest_sees_names_values_and_dtypes() -> None:
    weights = {"w": torch.arange(4, dtype=torch.float32), "b": torch.zeros(2, dtype=torch.bfloat16)}
    same = {"w": torch.arange(4, dtype=torch.float32), "b": torch.zeros(2, dtype=torch.bfloat16)}
    assert state_dict_digest([weights]) == state_dict_digest([same])
    assert state_dict_digest([weights]) != state_dict_digest([{**weights, "w": torch.arange(4.0) + 1}])
    assert state_dict_digest([weights]) != state_dict_digest([{"v": weights["w"], "b": weights["b"]}])
    assert state_dict_digest([weights]) != state_dict_digest([weights, weights])
    assert state_dict_digest([weights]) != state_dict_digest([{**weights, "w": weights["w"].double()}])
