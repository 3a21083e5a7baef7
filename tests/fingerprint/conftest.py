"""Shared fixtures of the fingerprint tests: tiny raw datasets written by hand or by the synthetic generator."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from nnseg.io import ImageGeometry, write_image, write_segmentation
from nnseg.testing import make_synthetic_dataset

HandCase = tuple[Sequence[np.ndarray], np.ndarray, Sequence[float]]
"""One case written by hand: one image per channel, the label map, the spacing (array order)."""
WriteRaw = Callable[..., Path]


def write_raw(
    folder: Path,
    cases: Mapping[str, HandCase],
    *,
    channel_names: Sequence[str] = ("MR",),
    num_labels: int = 3,
) -> Path:
    """Write ``cases`` as an nnU-Net raw dataset (``dataset.json``, ``imagesTr``, ``labelsTr``) and return it."""
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case_id, (images, seg, spacing) in cases.items():
        geometry = ImageGeometry.identity(spacing)
        for channel, image in enumerate(images):
            write_image(
                np.asarray(image, dtype=np.float32), folder / "imagesTr" / f"{case_id}_{channel:04d}.nii.gz", geometry
            )
        write_segmentation(seg, folder / "labelsTr" / f"{case_id}.nii.gz", geometry)
    labels = {"background": 0, **{f"l{i}": i for i in range(1, num_labels)}}
    spec = {
        "channel_names": {str(i): name for i, name in enumerate(channel_names)},
        "labels": labels,
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(spec, indent=2))
    return folder


@pytest.fixture
def write_raw_dataset() -> WriteRaw:
    """The :func:`write_raw` helper."""
    return write_raw


def hand_cases() -> dict[str, HandCase]:
    """Three two-channel cases whose fingerprint is easy to compute by hand (see test_fingerprint_stats)."""
    a = np.zeros((4, 6, 8), np.float32)
    a[1:3, 1:5, 2:6] = 10.0  # nonzero box (2, 4, 4) of 4 * 6 * 8: relative size 32 / 192 = 1/6
    seg_a = np.zeros(a.shape, np.uint8)
    seg_a[1:3, 2:4, 2:6] = 1  # foreground intensity 10 (channel 1: 21)
    b = np.full((5, 6, 8), 20.0, np.float32)  # no zero voxel: nothing cropped, relative size 1
    seg_b = np.zeros(b.shape, np.uint8)
    seg_b[0, 0, :3] = 2  # foreground intensity 20 (channel 1: 41)
    c = np.zeros((4, 6, 8), np.float32)
    c[:, :3, :] = 5.0  # crop to (4, 3, 8): relative size 0.5; no foreground at all
    seg_c = np.zeros(c.shape, np.uint8)

    def second(image: np.ndarray) -> np.ndarray:
        return np.where(image != 0, 2 * image + 1, 0).astype(np.float32)

    return {
        "a": ([a, second(a)], seg_a, (3.0, 0.5, 0.75)),
        "b": ([b, second(b)], seg_b, (2.5, 0.5, 0.75)),
        "c": ([c, second(c)], seg_c, (4.0, 0.6, 0.6)),
    }


@pytest.fixture(name="hand_cases")
def hand_cases_fixture() -> dict[str, HandCase]:
    """The :func:`hand_cases` arrays (a fresh copy per test)."""
    return hand_cases()


@pytest.fixture
def hand_dataset(tmp_path: Path) -> Path:
    """The :func:`hand_cases` dataset, channels ``T2`` and ``ADC``."""
    return write_raw(tmp_path / "Dataset900_Hand", hand_cases(), channel_names=("T2", "ADC"))


@pytest.fixture(scope="session")
def synthetic_mr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small MR-like cases with crop-to-nonzero (read-only: tests must not modify it)."""
    root = tmp_path_factory.mktemp("synthetic_mr")
    return make_synthetic_dataset(root, num_cases=6, shape=(10, 16, 16), modality="mr", seed=3)
