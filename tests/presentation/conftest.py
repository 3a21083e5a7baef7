"""A tiny raw dataset shared by the presentation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnseg.testing import make_synthetic_dataset


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three CT-like training cases of about 12 x 24 x 24 voxels and one test case."""
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("raw"), num_cases=3, num_test_cases=1, shape=(12, 24, 24), spacing=(2.0, 1.0, 1.0)
    )
