"""The generator's lesion_scale option: a larger lesion on demand, the default data unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnseg.errors import ConfigError
from nnseg.testing import make_synthetic_case, make_synthetic_dataset


def test_lesion_scale_grows_only_the_lesion_volume() -> None:
    small = [make_synthetic_case((24, 32, 32), seed=(0, i))[1] for i in range(4)]
    large = [make_synthetic_case((24, 32, 32), seed=(0, i), lesion_scale=1.8)[1] for i in range(4)]
    for a, b in zip(small, large):
        assert np.count_nonzero(b == 2) > 3 * np.count_nonzero(a == 2)
        assert np.count_nonzero(b > 0) >= np.count_nonzero(a > 0) * 0.9  # body and organ are drawn the same way


def test_scale_one_is_the_default_data() -> None:
    image, label = make_synthetic_case((16, 24, 24), seed=3)
    image_1, label_1 = make_synthetic_case((16, 24, 24), seed=3, lesion_scale=1.0)
    np.testing.assert_array_equal(image, image_1)
    np.testing.assert_array_equal(label, label_1)


def test_dataset_json_records_the_scale_only_when_set(tmp_path: Path) -> None:
    default = make_synthetic_dataset(tmp_path / "a", num_cases=1, shape=(16, 24, 24))
    scaled = make_synthetic_dataset(tmp_path / "b", num_cases=1, shape=(16, 24, 24), lesion_scale=1.5)
    assert "lesion_scale" not in json.loads((default / "dataset.json").read_text())["nnseg_synthetic"]
    assert json.loads((scaled / "dataset.json").read_text())["nnseg_synthetic"]["lesion_scale"] == 1.5


@pytest.mark.parametrize("value", [0.1, 3.0, "big", True])
def test_bad_lesion_scale_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"make_synthetic_case: lesion_scale must be a number in \[0.5, 2.5\]"):
        make_synthetic_case((16, 24, 24), lesion_scale=value)  # type: ignore[arg-type]
