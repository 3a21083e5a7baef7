"""A tiny raw dataset and a plan for it, shared by the reliability tests."""

from __future__ import annotations

import pytest

from nnseg.dataset import RawDataset
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import ConfigurationPlan, Planner
from nnseg.testing import make_synthetic_dataset

STATS = IntensityStats(mean=100.0, median=100.0, std=50.0, min=0.0, max=300.0, percentile_99_5=250.0,
                       percentile_00_5=10.0)  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawDataset, ConfigurationPlan]:
    """Four 12 x 16 x 16 cases and nnseg's 3d_fullres plan for them (from a made-up fingerprint)."""
    root = make_synthetic_dataset(tmp_path_factory.mktemp("raw"), num_cases=4, shape=(12, 16, 16))
    dataset = RawDataset.from_folder(root)
    fingerprint = Fingerprint(((1.0,) * 3,) * 4, ((12, 16, 16),) * 4, (STATS,), 1.0)
    return dataset, Planner().plan(fingerprint, dataset.spec)["3d_fullres"]
