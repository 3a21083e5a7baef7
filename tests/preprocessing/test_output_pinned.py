"""Pins the preprocessed output (arrays and class locations) of a small synthetic dataset.

The digests were computed before the speed work of issue 18; any change of the store's arrays (not of its
file bytes: the compression container may change) makes this fail. Two scenarios: CT with resampling of an
anisotropic case (separate z), and MR with two channels on the original grid, with 1 and 2 workers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint
from nnseg.planning import Planner
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset
from nnseg.testing import make_synthetic_dataset

PINNED = {
    "ct_aniso": "8d0bb0faa941223512eabb01d458356ba95658a1ee7cf73e13861b464d79bd81",
    "mr_two_channels": "e7e40dc9c99614a99386583b51c97332331c2bfd8f686b772478c3c7361084da",
}


def _digest(store: PreprocessedStore) -> str:
    digest = hashlib.sha256()
    for case_id in store.case_ids():
        case = store.read_case(case_id)
        for array in (case.data, case.seg):
            digest.update(str((array.dtype, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        for key, value in sorted((case.class_locations or {}).items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        digest.update(repr(case.properties.to_json()).encode())
    return digest.hexdigest()


def _scenario(name: str, root: Path) -> RawDataset:
    if name == "ct_aniso":
        raw = make_synthetic_dataset(root, num_cases=3, shape=(12, 40, 40), spacing=(4.0, 1.0, 1.0),
                                     spacing_jitter=0.2, seed=3)  # fmt: skip
    else:
        raw = make_synthetic_dataset(root, num_cases=3, shape=(16, 24, 24), modality="mr", num_channels=2, seed=5)
    return RawDataset.from_folder(raw)


@pytest.mark.parametrize("name", sorted(PINNED))
@pytest.mark.parametrize("workers", [1, 2])
def test_store_arrays_are_pinned(tmp_path: Path, name: str, workers: int) -> None:
    dataset = _scenario(name, tmp_path / "raw")
    plans = Planner().plan(
        extract_fingerprint(dataset, num_samples=10_000), dataset.spec, dataset_name=dataset.root.name
    )
    store = preprocess_dataset(dataset, plans["3d_fullres"], tmp_path / "store", num_workers=workers, progress=False)
    assert _digest(store) == PINNED[name]
