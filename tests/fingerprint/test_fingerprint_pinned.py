"""Pinned fingerprints: the JSON of a few small datasets must stay bit-identical across speed work.

The expected files in ``data/pinned_fingerprints.json`` were computed before the pooled statistics, the
sample drawing and the NIfTI read path were optimised; regenerate them only for an intended change of
results (``python tests/fingerprint/test_fingerprint_pinned.py OUT.json``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import nnseg.fingerprint._extract as extract_module
import nnseg.fingerprint._runner as runner_module
from nnseg.dataset import RawDataset
from nnseg.fingerprint import extract_fingerprint
from nnseg.fingerprint._pooling import SampleBuffer
from nnseg.testing import make_synthetic_dataset

PINNED = Path(__file__).parent / "data" / "pinned_fingerprints.json"
DATASETS: dict[str, dict[str, Any]] = {
    "Dataset401_CT": {"modality": "ct", "shape": (12, 20, 20), "num_cases": 5, "seed": 7, "num_samples": 20011},
    "Dataset402_MR": {
        "modality": "mr",
        "shape": (10, 18, 22),
        "num_cases": 4,
        "num_channels": 2,
        "seed": 8,
        "num_samples": 30000,
    },  # fmt: skip
    "Dataset403_Aniso": {
        "modality": "mr",
        "shape": (8, 24, 24),
        "num_cases": 3,
        "seed": 9,
        "num_samples": 777,
        "spacing": (5.0, 0.8, 0.8),
        "spacing_jitter": 0.2,
    },  # fmt: skip
    "Dataset404_2D": {
        "modality": "ct",
        "shape": (1, 30, 30),
        "num_cases": 3,
        "seed": 10,
        "num_samples": 4099,
        "two_d": True,
    },  # fmt: skip
}


def compute_all(root: Path, *, num_workers: int = 1, cache: bool = False, names: Any = None) -> dict[str, Any]:
    """Return the fingerprint JSON of the pinned datasets (all, or ``names``), written under ``root``."""
    out = {}
    for name, options in DATASETS.items():
        if names is not None and name not in names:
            continue
        options = dict(options)
        num_samples = options.pop("num_samples")
        folder = make_synthetic_dataset(root, dataset_name=name, **options)
        cache_dir = root / f"cache_{name}" if cache else None
        fp = extract_fingerprint(RawDataset.from_folder(folder), num_samples=num_samples, num_workers=num_workers,
                                 cache_dir=cache_dir)  # fmt: skip
        out[name] = fp.to_json()
    return out


def _pinned() -> dict[str, Any]:
    return dict(json.loads(PINNED.read_text()))


def test_fingerprints_are_bit_identical_to_the_pinned_ones(tmp_path: Path) -> None:
    got = json.loads(json.dumps(compute_all(tmp_path)))
    assert got == _pinned()


def test_pinned_with_cache_and_two_workers(tmp_path: Path) -> None:
    got = json.loads(json.dumps(compute_all(tmp_path, num_workers=2, cache=True)))
    assert got == _pinned()


def test_pinned_in_memory_with_a_helper_and_the_caller_drawing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "MIN_HELPER_WORK_S", 0.0)  # start the helper even for tiny cases
    original = extract_module._fingerprint_files
    from_helpers: list[str] = []

    def slow_in_caller(task: Any, out: Any = None) -> Any:  # the spawned helper runs the original
        time.sleep(1.0)  # longer than a helper's start-up, even on a busy machine
        return original(task, out)

    def counting_put(self: Any, index: int, samples: Any) -> None:
        from_helpers.extend([str(index)] if samples.shape[1] else [])
        original_put(self, index, samples)

    original_put = SampleBuffer.put
    monkeypatch.setattr(extract_module, "_fingerprint_files", slow_in_caller)
    monkeypatch.setattr(SampleBuffer, "put", counting_put)
    names = ("Dataset401_CT", "Dataset402_MR")
    got = json.loads(json.dumps(compute_all(tmp_path, num_workers=2, names=names)))
    assert got == {name: _pinned()[name] for name in names}
    assert from_helpers  # some cases came from the helper


if __name__ == "__main__":  # regenerate (only for an intended change of results)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        Path(sys.argv[1]).write_text(json.dumps(compute_all(Path(tmp)), indent=1) + "\n")
