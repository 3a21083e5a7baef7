"""Fuzzing the JSON readers: every input gives a result or an NnsegError, never another traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnseg.dataset import DatasetSpec
from nnseg.errors import NnsegError
from nnseg.preprocessing import StoreManifest

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
VALID_SPEC = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "numTraining": 2,
              "file_ending": ".nii.gz"}  # fmt: skip


def _mutations(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid documents with one key replaced, removed or added, plus arbitrary JSON."""
    keys = st.sampled_from(sorted(valid))
    replaced = st.tuples(keys, JSON).map(lambda kv: {**valid, kv[0]: kv[1]})
    removed = keys.map(lambda k: {key: v for key, v in valid.items() if key != k})
    added = st.tuples(st.text(max_size=8), JSON).map(lambda kv: {**valid, kv[0]: kv[1]})
    return replaced | removed | added | JSON


def _result_or_nnseg_error(parse: Any, data: Any) -> Any:
    """``parse(data)``, or the NnsegError it raised; any other exception fails the test."""
    try:
        return parse(data)
    except NnsegError as err:
        return err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations(VALID_SPEC))
def test_dataset_json(data: Any) -> None:
    assert isinstance(_result_or_nnseg_error(DatasetSpec.from_dict, data), DatasetSpec | NnsegError)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_store_manifest(data: Any) -> None:
    assert isinstance(_result_or_nnseg_error(StoreManifest.from_json, data), StoreManifest | NnsegError)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=64))
def test_store_manifest_file(tmp_path_factory: Any, content: bytes) -> None:
    from nnseg.preprocessing import PreprocessedStore

    root: Path = tmp_path_factory.mktemp("s")
    (root / "store.json").write_bytes(content)
    outcome = _result_or_nnseg_error(lambda _: PreprocessedStore(root).manifest(), None)
    assert outcome is None or isinstance(outcome, StoreManifest | NnsegError)


def test_valid_spec_parses() -> None:
    assert DatasetSpec.from_dict(json.loads(json.dumps(VALID_SPEC))).num_channels == 1


PLANS_FILE = Path(__file__).resolve().parents[1] / "planning" / "data" / "nnUNetPlans.json"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_plans_json(data: st.DataObject) -> None:
    from nnseg.planning import Plans

    document = data.draw(_mutations(json.loads(PLANS_FILE.read_text())))
    assert isinstance(_result_or_nnseg_error(Plans.from_json, document), Plans | NnsegError)


@settings(max_examples=80, deadline=None)
@given(JSON)
def test_workspace_json(tmp_path_factory: Any, data: Any) -> None:
    from nnseg.workspace import Workspace

    root: Path = tmp_path_factory.mktemp("w")
    (root / "workspace.json").write_text(json.dumps(data))
    assert isinstance(_result_or_nnseg_error(lambda _: Workspace(root).raw_dataset_dir(), None), Path | NnsegError)
