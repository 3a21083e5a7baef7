"""A damaged store case (truncated, or same-size bytes that changed) is found, named with the repairing
command when read, never silently dropped from training, and redone by the next preprocessing run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnseg.dataset import RawDataset
from nnseg.errors import StoreError
from nnseg.planning import ConfigurationPlan
from nnseg.preprocessing import PreprocessedStore, preprocess_dataset


def _store_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.fixture
def built(tiny: tuple[RawDataset, ConfigurationPlan], tmp_path: Path) -> tuple[PreprocessedStore, dict[str, bytes]]:
    dataset, plan = tiny
    store = preprocess_dataset(dataset, plan, tmp_path / "store", progress=False)
    return store, _store_bytes(store.root)


def test_truncated_case_is_named_not_dropped(built: tuple[PreprocessedStore, dict[str, bytes]],
                                            tiny: tuple[RawDataset, ConfigurationPlan]) -> None:  # fmt: skip
    store, reference = built
    data = store.path("case_001", "data")
    size = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(size // 2)
    assert store.status().stale == ("case_001",)
    with pytest.raises(
        StoreError,
        match=r"holds 1 damaged or incomplete case\(s\): 'case_001'\. To repair them, run "
        r"preprocessing again \(`nnseg preprocess WORK -c CONFIG`",
    ):
        store.case_ids()
    with pytest.raises(
        StoreError,
        match=rf"case 'case_001' in store .* is damaged: case_001\.data\.b2nd has "
        rf"{size // 2} bytes, its marker recorded {size}\. To repair it, run preprocessing again",
    ):
        store.read_case("case_001")
    preprocess_dataset(*tiny, store.root, progress=False)
    assert _store_bytes(store.root) == reference


def test_changed_bytes_of_the_right_size_are_found_by_the_checksum(
    built: tuple[PreprocessedStore, dict[str, bytes]], tiny: tuple[RawDataset, ConfigurationPlan]
) -> None:
    store, reference = built
    data = store.path("case_002", "data")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 :] = bytes(len(raw) - len(raw) // 2)  # an undecodable tail of the recorded size
    data.write_bytes(bytes(raw))
    assert store.status().done == ("case_000", "case_001", "case_002", "case_003")  # sizes alone agree
    assert store.status(verify=True).stale == ("case_002",)
    with pytest.raises(
        StoreError,
        match=r"case 'case_002' in store .* is damaged: a file cannot be decoded .*To "
        r"repair it, run preprocessing again",
    ):
        store.read_case("case_002")
    preprocess_dataset(*tiny, store.root, progress=False)  # a resumed run verifies checksums and redoes it
    assert _store_bytes(store.root) == reference


def test_marker_records_size_and_checksum(built: tuple[PreprocessedStore, dict[str, bytes]]) -> None:
    import hashlib
    import json

    store, _ = built
    marker = json.loads(store.path("case_000", "properties").read_text())
    for piece, entry in marker["files"].items():
        content = store.path("case_000", piece).read_bytes()
        assert entry["nbytes"] == len(content)
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()
