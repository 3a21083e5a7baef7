"""``PreprocessedStore``: manifest and store key, atomic case files, status (done / missing / stale), readers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from nnseg.dataset import DatasetSpec
from nnseg.errors import StoreError
from nnseg.fingerprint import Fingerprint, IntensityStats
from nnseg.planning import ConfigurationPlan, Planner
from nnseg.preprocessing import PreprocessedStore, StoreManifest, store_name
from nnseg.preprocessing._case import PreprocessedCase
from nnseg.preprocessing._preprocessor import Preprocessor
from nnseg.testing import make_synthetic_case

SPEC = DatasetSpec(channel_names=("CT",), labels={"background": 0, "organ": 1, "lesion": 2}, num_training=3,
                   file_ending=".nii.gz")  # fmt: skip
STATS = IntensityStats(mean=100.0, median=100.0, std=50.0, min=0.0, max=300.0, percentile_99_5=250.0,
                       percentile_00_5=10.0)  # fmt: skip


def make_plan(spacing: float = 1.0) -> ConfigurationPlan:
    fingerprint = Fingerprint(((spacing,) * 3,) * 3, ((16, 24, 24),) * 3, (STATS,), 1.0)
    return Planner().plan(fingerprint, SPEC)["3d_fullres"]


PLAN = make_plan()


def make_case(case_id: str, seed: int = 0, labelled: bool = True) -> PreprocessedCase:
    image, label = make_synthetic_case((16, 24, 24), modality="ct", num_classes=3, seed=seed)
    return Preprocessor(PLAN, SPEC).preprocess(image, (1.0, 1.0, 1.0), seg=label if labelled else None,
                                               case_id=case_id)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> PreprocessedStore:
    store = PreprocessedStore(tmp_path / "store")
    store.initialise(PLAN, SPEC)
    return store


def test_constructing_touches_nothing(tmp_path: Path) -> None:
    store = PreprocessedStore(tmp_path / "s")
    assert not (tmp_path / "s").exists()
    assert store.manifest() is None
    assert store.status(["a"]).missing == ("a",)


def test_manifest_records_format_key_and_fields(store: PreprocessedStore) -> None:
    data = json.loads(store.manifest_path.read_text())
    assert data["format_version"] == 1
    assert data["configuration"] == "3d_fullres"
    assert data["preprocessing_fields"]["location_classes"] == [1, 2]
    assert data["preprocessing_fields"]["spacing"] == [1.0, 1.0, 1.0]
    assert data["array_format"]["library"] == "blosc2"
    assert StoreManifest.from_json(data) == StoreManifest.for_plan(PLAN, SPEC)
    assert store_name(PLAN, SPEC) == f"3d_fullres_{data['preprocessing_hash']}"


def test_plans_with_same_preprocessing_share_the_store(store: PreprocessedStore) -> None:
    other = dataclasses.replace(PLAN, plans_name="nnUNetResEncUNetLPlans", batch_size=7)
    before = store.manifest_path.read_bytes()
    assert store.initialise(other, SPEC).plans_name == "nnUNetPlans"  # the first plan's manifest stays
    assert store.manifest_path.read_bytes() == before
    assert store_name(other, SPEC) == store_name(PLAN, SPEC)


def test_other_spacing_is_refused(store: PreprocessedStore) -> None:
    with pytest.raises(StoreError, match=r"was built for preprocessing \w+, got \w+\. Use a new store folder or "
                                         r"pass overwrite=True\..*differs in: spacing"):  # fmt: skip
        store.initialise(make_plan(2.0), SPEC)
    assert store_name(make_plan(2.0), SPEC) != store_name(PLAN, SPEC)


def test_other_labels_are_refused(store: PreprocessedStore) -> None:
    regions = dataclasses.replace(SPEC, labels={"background": 0, "organ": 1, "lesion": 2, "ignore": 3})
    with pytest.raises(StoreError, match=r"differs in: location_classes"):
        store.initialise(PLAN, regions)


def test_overwrite_replaces_manifest_and_old_cases_become_stale(store: PreprocessedStore) -> None:
    store.write_case(make_case("a"))
    other = make_plan(2.0)
    store.initialise(other, SPEC, overwrite=True)
    assert store.manifest() == StoreManifest.for_plan(other, SPEC)
    assert store.status(["a"]).stale == ("a",)
    assert store.path("a", "data").is_file()  # nothing deleted


def test_unreadable_manifest_is_reported(store: PreprocessedStore) -> None:
    store.manifest_path.write_text("{not json")
    with pytest.raises(StoreError, match=r"store\.json is not valid JSON .*pass overwrite=True"):
        store.initialise(PLAN, SPEC)
    store.manifest_path.write_text('{"format_version": 1}')
    with pytest.raises(StoreError, match=r"is not a valid store manifest \(KeyError"):
        store.status()
    assert store.initialise(PLAN, SPEC, overwrite=True).preprocessing_hash


def test_newer_format_is_refused(store: PreprocessedStore) -> None:
    data = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**data, "format_version": 99}))
    with pytest.raises(StoreError, match="has format version 99, newer than this nnseg reads"):
        store.initialise(PLAN, SPEC)


def test_write_and_read_case(store: PreprocessedStore) -> None:
    case = make_case("a", seed=1)
    store.write_case(case)
    back = store.read_case("a")
    np.testing.assert_array_equal(back.data, case.data)
    assert back.seg is not None
    assert case.seg is not None
    assert back.seg.dtype == case.seg.dtype
    np.testing.assert_array_equal(back.seg, case.seg)
    assert back.properties == case.properties == store.read_properties("a")
    locations = store.read_class_locations("a")
    assert locations is not None
    assert case.class_locations is not None
    assert sorted(locations) == sorted(case.class_locations)
    index = (slice(2, 9), slice(5, 20), slice(0, 7))
    data, seg = store.read_patch("a", index)
    full = (slice(None), *index)
    np.testing.assert_array_equal(data, case.data[full])
    assert seg is not None
    np.testing.assert_array_equal(seg, case.seg[full])
    assert store.case_ids() == ("a",)
    assert store.missing(["b", "a"]) == ["b"]


def test_unlabelled_case(store: PreprocessedStore) -> None:
    store.write_case(make_case("t", labelled=False))
    assert not store.path("t", "seg").exists()
    assert store.read_case("t").seg is None
    assert store.read_class_locations("t") is None
    assert store.read_patch("t", (slice(0, 2),) * 3)[1] is None


def test_status_done_missing_stale_extra(store: PreprocessedStore) -> None:
    for case_id in ("a", "b", "c", "d", "e"):
        store.write_case(make_case(case_id))
    store.path("b", "properties").unlink()  # pieces without the marker
    with store.path("c", "data").open("r+b") as handle:  # a truncated file
        handle.truncate(100)
    (store.root / f".{store.path('d', 'seg').name}.abc123.tmp").write_bytes(b"partial")  # a leftover temp file
    status = store.status(["a", "b", "c", "d", "z"])
    assert (status.done, status.missing, status.stale, status.extra) == (("a",), ("z",), ("b", "c", "d"), ("e",))
    assert status.todo == ("b", "c", "d", "z")
    assert not status.is_complete
    assert status.summary() == "1 done, 1 missing, 3 stale"


def test_discard_cases_touches_only_those_cases(store: PreprocessedStore) -> None:
    store.write_case(make_case("a"))
    store.write_case(make_case("ab"))
    (store.root / "notes.txt").write_text("mine")
    removed = store.discard_cases(["a"])
    assert removed[0].name == "a.properties.json"  # the marker goes first
    assert {p.name for p in removed} == {"a.properties.json", "a.data.b2nd", "a.seg.b2nd", "a.locations.npz"}
    assert store.status(["ab"]).done == ("ab",)
    assert (store.root / "notes.txt").read_text() == "mine"


def test_reading_incomplete_case_fails(store: PreprocessedStore) -> None:
    with pytest.raises(StoreError, match=r"case 'x' is not complete in store .*run preprocessing again"):
        store.read_case("x")
    with pytest.raises(StoreError, match=r"case 'x' is not complete in store"):
        store.read_patch("x", (slice(0, 1),) * 3)


def test_bad_inputs(store: PreprocessedStore, tmp_path: Path) -> None:
    case = make_case("a")
    with pytest.raises(StoreError, match=r"case id '\.\./x' cannot name a file in store"):
        store.write_case(dataclasses.replace(case, case_id="../x"))
    with pytest.raises(StoreError, match=r"expected one slice with step 1 per spatial axis"):
        store.read_patch("a", (slice(0, 4, 2),) * 3)
    with pytest.raises(StoreError, match=r"is not an initialised preprocessed store \(store\.json is missing\)"):
        PreprocessedStore(tmp_path / "empty").write_case(case)
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is a file; pass a folder path"):
        PreprocessedStore(tmp_path / "file").initialise(PLAN, SPEC)
