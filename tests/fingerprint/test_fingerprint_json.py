"""``Fingerprint`` JSON: nnU-Net's ``dataset_fingerprint.json`` keys, round trip, load/save, bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnseg.errors import FingerprintError
from nnseg.fingerprint import Fingerprint, IntensityStats

NNUNET_KEYS = {"spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel",
               "median_relative_size_after_cropping"}  # fmt: skip
NNUNET_CHANNEL_KEYS = {"mean", "median", "std", "min", "max", "percentile_99_5", "percentile_00_5"}

finite = st.floats(-1e6, 1e6, allow_nan=False)
stats_strategy = st.builds(IntensityStats, finite, finite, st.floats(0, 1e6), finite, finite, finite, finite)


@st.composite
def fingerprints(draw: st.DrawFn) -> Fingerprint:
    num_cases = draw(st.integers(1, 5))
    ndim = 3
    spacing = st.tuples(*[st.floats(0.01, 1000, allow_nan=False)] * ndim)
    shape = st.tuples(*[st.integers(1, 1000)] * ndim)
    return Fingerprint(
        spacings=tuple(draw(spacing) for _ in range(num_cases)),
        shapes_after_crop=tuple(draw(shape) for _ in range(num_cases)),
        intensity_stats=tuple(draw(st.lists(stats_strategy, min_size=1, max_size=4))),
        median_relative_size_after_cropping=draw(st.floats(0.0, 1.0)),
        case_ids=draw(st.none() | st.just(tuple(f"case_{i:03d}" for i in range(num_cases)))),
    )


@settings(max_examples=40, deadline=None)
@given(fp=fingerprints())
def test_json_round_trip_with_nnunet_keys(fp: Fingerprint) -> None:
    data = json.loads(json.dumps(fp.to_json()))
    assert set(data) - {"case_ids"} == NNUNET_KEYS
    assert ("case_ids" in data) == (fp.case_ids is not None)
    channels = data["foreground_intensity_properties_per_channel"]
    assert list(channels) == [str(i) for i in range(fp.num_channels)]
    assert all(set(c) == NNUNET_CHANNEL_KEYS for c in channels.values())
    assert Fingerprint.from_json(data) == fp


def test_save_and_load(tmp_path: Path) -> None:
    stats = IntensityStats.from_samples(np.array([1, 2, 3, 4], np.float32))
    fp = Fingerprint(((2.5, 0.7, 0.7),), ((40, 200, 180),), (stats, stats), 0.83, ("liver_0",))
    fp.save(tmp_path / "fingerprint.json")
    assert Fingerprint.load(tmp_path / "fingerprint.json") == fp
    assert stats.median == 2.5
    assert stats.percentile_99_5 == pytest.approx(3.985)


def test_loads_an_nnunet_file_without_case_ids(tmp_path: Path) -> None:
    channel = {"max": 3071.0, "mean": 99.5, "median": 101.0, "min": -1024.0, "percentile_00_5": -57.0,
               "percentile_99_5": 276.0, "std": 70.1}  # fmt: skip
    data = {"foreground_intensity_properties_per_channel": {"1": channel, "0": {**channel, "mean": 1.0}},
            "median_relative_size_after_cropping": 1.0, "shapes_after_crop": [[75, 512, 512]],
            "spacings": [[2.5, 0.7, 0.7]]}  # fmt: skip
    (tmp_path / "dataset_fingerprint.json").write_text(json.dumps(data))
    fp = Fingerprint.load(tmp_path / "dataset_fingerprint.json")
    assert fp.case_ids is None
    assert [s.mean for s in fp.intensity_stats] == [1.0, 99.5]  # channels ordered by index
    assert fp.to_json() == {
        **data,
        "foreground_intensity_properties_per_channel": {"0": {**channel, "mean": 1.0}, "1": channel},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spacings": None}, r"f.json: missing key\(s\) \['spacings'\]; expected an nnU-Net dataset_fingerprint.json"),
        ({"shapes_after_crop": [[1, 2, "x"]]}, r"f.json: malformed fingerprint \(invalid literal"),
        (
            {"shapes_after_crop": [[1, 2, 3], [1, 2, 3]]},
            r"f.json: fingerprint has 1 spacings but 2 shapes; expected one of each",
        ),
        (
            {"foreground_intensity_properties_per_channel": {"0": {"mean": 1.0}}},
            r"f.json: channel 0: intensity statistics lack \['median'",
        ),
    ],
)
def test_bad_fingerprint_files(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    stats = {key: 1.0 for key in NNUNET_CHANNEL_KEYS}
    data: dict[str, Any] = {"spacings": [[1.0, 1.0, 1.0]], "shapes_after_crop": [[1, 2, 3]],
                            "foreground_intensity_properties_per_channel": {"0": stats},
                            "median_relative_size_after_cropping": 1.0}  # fmt: skip
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    (tmp_path / "f.json").write_text(json.dumps(data))
    with pytest.raises(FingerprintError, match=message):
        Fingerprint.load(tmp_path / "f.json")


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match=r"fingerprint file .*none.json does not exist; run extract_fingerprint"):
        Fingerprint.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FingerprintError, match=r"bad.json is not valid JSON \(Expecting property name"):
        Fingerprint.load(tmp_path / "bad.json")


def test_stats_of_no_samples_is_an_error() -> None:
    with pytest.raises(FingerprintError, match="cannot compute intensity statistics of zero samples"):
        IntensityStats.from_samples(np.empty(0, np.float32))
