"""Parity: nnseg's fingerprint equals nnunetv2's ``DatasetFingerprintExtractor`` on synthetic datasets."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from nnseg.dataset import RawDataset
from nnseg.fingerprint import Fingerprint, extract_fingerprint
from nnseg.testing import make_synthetic_dataset

TOTAL_SAMPLES = 6000.0
"""Stands in for nnU-Net's 1e8 foreground samples so the test stays fast (set on both sides)."""

DATASETS: dict[str, dict[str, Any]] = {
    "Dataset201_CT": {"modality": "ct", "shape": (12, 20, 20), "num_cases": 4},
    "Dataset202_MR": {"modality": "mr", "shape": (12, 18, 22), "num_cases": 3, "num_channels": 2},
    "Dataset203_Aniso": {
        "modality": "mr",
        "shape": (8, 24, 24),
        "num_cases": 5,
        "spacing": (5.0, 0.8, 0.8),
        "spacing_jitter": 0.2,
    },  # fmt: skip
}


def _nnunet_fingerprint(name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run nnunetv2's extractor on ``nnUNet_raw/name`` (its worker pool forked instead of spawned, for speed)."""
    from nnunetv2.experiment_planning.dataset_fingerprint import fingerprint_extractor

    fork = SimpleNamespace(get_context=lambda method: multiprocessing.get_context("fork"))
    monkeypatch.setattr(fingerprint_extractor, "multiprocessing", fork)
    extractor = fingerprint_extractor.DatasetFingerprintExtractor(name, num_processes=1, verbose=True)
    extractor.num_foreground_voxels_for_intensitystats = TOTAL_SAMPLES
    return dict(extractor.run(overwrite_existing=True))


@pytest.mark.parity
def test_fingerprint_equals_nnunetv2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("nnunetv2")
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")  # skips nnunetv2's hostname lookup at import
    for seed, (name, options) in enumerate(DATASETS.items()):
        folder = make_synthetic_dataset(tmp_path / "nnUNet_raw", dataset_name=name, seed=seed, **options)
        dataset = RawDataset.from_folder(folder)
        ours = extract_fingerprint(dataset, num_samples=int(TOTAL_SAMPLES // len(dataset)))
        theirs = _nnunet_fingerprint(name, monkeypatch)
        written = Fingerprint.load(tmp_path / "nnUNet_preprocessed" / name / "dataset_fingerprint.json")
        assert written.to_json() == Fingerprint.from_json(theirs).to_json()
        _assert_equal(ours.to_json(), theirs, name)


def _assert_equal(ours: dict[str, Any], theirs: dict[str, Any], name: str) -> None:
    assert set(ours) - {"case_ids"} == set(theirs), name
    np.testing.assert_allclose(ours["spacings"], theirs["spacings"], rtol=1e-12, err_msg=name)
    assert ours["shapes_after_crop"] == [list(s) for s in theirs["shapes_after_crop"]], name
    assert ours["median_relative_size_after_cropping"] == pytest.approx(theirs["median_relative_size_after_cropping"])
    our_channels = ours["foreground_intensity_properties_per_channel"]
    their_channels = theirs["foreground_intensity_properties_per_channel"]
    assert list(our_channels) == [str(c) for c in their_channels], name
    for channel, stats in our_channels.items():
        expected = {key: float(value) for key, value in their_channels[int(channel)].items()} if isinstance(
            next(iter(their_channels)), int) else their_channels[channel]  # fmt: skip
        assert stats == pytest.approx(expected, rel=1e-6), f"{name} channel {channel}"
