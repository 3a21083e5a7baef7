"""Fixtures of the training-data tests."""

from __future__ import annotations

import pytest
from training_data_helpers import make_plan, make_spec, threshold_case, write_store

from nnseg.dataset import DatasetSpec
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing._store import PreprocessedStore


@pytest.fixture(scope="module")
def threshold_store(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[PreprocessedStore, ConfigurationPlan, DatasetSpec]:
    """Four threshold cases of varying shape, all at least as large as the patch."""
    plan, spec = make_plan(), make_spec()
    shapes = [(20, 24, 28), (24, 20, 22), (18, 26, 20), (17, 30, 30)]
    cases = {f"case_{i}": threshold_case(shape, seed=i) for i, shape in enumerate(shapes)}
    store = write_store(tmp_path_factory.mktemp("store"), plan, spec, cases)
    return store, plan, spec
