"""Pinned batches: the loader's output for fixed (seed, step) must never change silently.

The hashes were computed before the loader's speed work (shared-memory batches, thread limits) and pin that
every later change keeps the batches bit-identical, for the default and the all-transforms-on pipelines.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.training import AugmentationConfig, Batch, TrainingLoader

PINNED = {
    "default": "0d72a04c60a66126c51bfecfbc1ec1efc7d739eb764ac041db2615595929b373",
    "loud": "e44768b244c5eae9b69f640bfe12a5a8876b8ca3ff26d51ebbde816a9ec43536",
}


def digest(batches: list[Batch]) -> str:
    """sha256 over the data, the targets, the case ids and the steps of the batches."""
    h = hashlib.sha256()
    for batch in batches:
        h.update(str((batch.step, batch.case_ids, tuple(batch.data.shape))).encode())
        h.update(batch.data.contiguous().numpy().tobytes())
        for target in batch.target:
            h.update(str((target.dtype, tuple(target.shape))).encode())
            h.update(target.contiguous().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pin_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, object]:
    plan, spec = make_plan(), make_spec()
    shapes = [(20, 24, 28), (24, 20, 22), (18, 26, 20)]
    cases = {f"case_{i}": threshold_case(shape, seed=10 + i) for i, shape in enumerate(shapes)}
    return write_store(tmp_path_factory.mktemp("pins"), plan, spec, cases), plan, spec


def _config(name: str, plan: object, spec: object) -> AugmentationConfig:
    config = AugmentationConfig.for_plan(plan, spec)  # type: ignore[arg-type]
    if name == "loud":
        names = [f.name for f in dataclasses.fields(config) if f.name.startswith("p_") and "per" not in f.name]
        config = dataclasses.replace(config, **{n: 1.0 for n in names})
    return config


@pytest.mark.parametrize("name", sorted(PINNED))
def test_batches_match_their_pinned_hash(pin_store: tuple[object, object, object], name: str) -> None:
    store, plan, spec = pin_store
    loader = TrainingLoader(store, store.case_ids(), plan, spec, seed=3, augmentation=_config(name, plan, spec),  # type: ignore[arg-type, attr-defined]
                            num_workers=0)  # fmt: skip
    batches = [loader.batch(step) for step in (0, 1, 5, 17)]
    assert all(b.data.dtype == torch.float32 for b in batches)
    assert digest(batches) == PINNED[name]


def test_batches_in_shared_memory_are_the_same(pin_store: tuple[object, object, object]) -> None:
    store, plan, spec = pin_store
    loader = TrainingLoader(store, store.case_ids(), plan, spec, seed=3, num_workers=0)  # type: ignore[arg-type, attr-defined]
    plain, shared = loader.factory(4), loader.factory(4, shared_memory=True)
    assert shared.data.is_shared()
    assert all(t.is_shared() for t in shared.target)
    assert not plain.data.is_shared()
    assert digest([plain]) == digest([shared])
