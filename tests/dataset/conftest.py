"""Builders of tiny raw datasets (4 x 5 x 6 voxels) that tests break on purpose."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nnseg.io import ImageGeometry, write_image, write_segmentation

SHAPE = (4, 5, 6)
GEOMETRY = ImageGeometry.identity((2.0, 1.0, 0.5))


def image_array(seed: int = 0, shape: Sequence[int] = SHAPE) -> np.ndarray:
    """A float32 image with finite random intensities."""
    return np.random.default_rng(seed).normal(100.0, 20.0, tuple(shape)).astype(np.float32)


def label_array(shape: Sequence[int] = SHAPE, values: Sequence[int] = (0, 1, 2)) -> np.ndarray:
    """A label map that holds every value of ``values``."""
    flat = np.resize(np.asarray(values, dtype=np.int64), int(np.prod(shape)))
    return flat.reshape(tuple(shape))


class RawBuilder:
    """Writes an nnU-Net raw dataset folder file by file; also hands out the default arrays and geometry."""

    shape = SHAPE
    geometry = GEOMETRY
    image_array = staticmethod(image_array)
    label_array = staticmethod(label_array)

    def __init__(self, root: Path, ending: str = ".nii.gz") -> None:
        self.root = root
        self.ending = ending
        root.mkdir(parents=True, exist_ok=True)

    def write_json(self, num_training: int, num_channels: int = 1, **overrides: Any) -> Path:
        """Write dataset.json; an override of None removes the key."""
        data: dict[str, Any] = {
            "channel_names": {str(i): f"ch{i}" for i in range(num_channels)},
            "labels": {"background": 0, "organ": 1, "lesion": 2},
            "numTraining": num_training,
            "file_ending": self.ending,
        }
        data.update(overrides)
        data = {k: v for k, v in data.items() if v is not None}
        path = self.root / "dataset.json"
        path.write_text(json.dumps(data))
        return path

    def image(
        self,
        case_id: str,
        channel: int = 0,
        array: np.ndarray | None = None,
        geometry: ImageGeometry = GEOMETRY,
        folder: str = "imagesTr",
    ) -> Path:
        """Write one channel file and return its path."""
        path = self.root / folder / f"{case_id}_{channel:04d}{self.ending}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(image_array(channel) if array is None else array, path, geometry)
        return path

    def label(
        self,
        case_id: str,
        array: np.ndarray | None = None,
        geometry: ImageGeometry = GEOMETRY,
        folder: str = "labelsTr",
    ) -> Path:
        """Write one label file and return its path."""
        path = self.root / folder / f"{case_id}{self.ending}"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_segmentation(label_array() if array is None else array, path, geometry)
        return path

    def case(self, case_id: str, num_channels: int = 1, split: str = "Tr", with_label: bool = True) -> None:
        """Write a complete, valid case."""
        for channel in range(num_channels):
            self.image(case_id, channel, folder=f"images{split}")
        if with_label:
            self.label(case_id, folder=f"labels{split}")

    def build(self, case_ids: Sequence[str] = ("case_a", "case_b", "case_c"), num_channels: int = 1) -> Path:
        """Write dataset.json and valid cases; return the dataset folder."""
        self.write_json(len(case_ids), num_channels)
        for case_id in case_ids:
            self.case(case_id, num_channels)
        return self.root


@pytest.fixture
def raw(tmp_path: Path) -> RawBuilder:
    """A builder writing into ``tmp_path/Dataset001_Test``."""
    return RawBuilder(tmp_path / "Dataset001_Test")


@pytest.fixture
def make_raw(tmp_path: Path) -> Callable[..., RawBuilder]:
    """A factory of builders for other file endings or folders: ``make_raw(name, ending)``."""

    def factory(name: str = "Dataset002_Other", ending: str = ".nii.gz") -> RawBuilder:
        return RawBuilder(tmp_path / name, ending)

    return factory
