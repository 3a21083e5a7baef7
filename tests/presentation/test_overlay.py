"""Overlay pictures: windowing, slice choice, one PNG per case, side by side, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from nnseg.errors import ConfigError, DatasetError
from nnseg.io import ImageGeometry, read_segmentation, write_segmentation
from nnseg.presentation import overlay_arrays, write_overlays
from nnseg.presentation._render import CT_WINDOW, foreground_slice, window_image
from nnseg.testing import make_synthetic_dataset


def test_ct_window_is_fixed_soft_tissue() -> None:
    shown = window_image(np.array([[-1000.0, CT_WINDOW[0], 40.0, CT_WINDOW[1], 3000.0]]), ct=True)
    np.testing.assert_allclose(shown, [[0.0, 0.0, 0.5, 1.0, 1.0]])


def test_other_modalities_use_percentiles_and_constant_slices_are_grey() -> None:
    values = np.concatenate([np.linspace(0.0, 1.0, 1000), [1e6]])[None]
    shown = window_image(values, ct=False)
    assert shown.max() == 1.0
    assert shown[0, 500] == pytest.approx(0.5, abs=0.01)  # the outlier does not squash the window
    assert np.all(window_image(np.full((4, 4), 7.0), ct=False) == 0.5)


def test_slice_with_most_foreground_is_chosen() -> None:
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[1, :2, :2] = 1
    labels[4, :4, :4] = 2
    assert foreground_slice(labels) == 4
    assert foreground_slice(np.zeros((6, 8, 8))) == 3
    image = np.random.default_rng(0).normal(size=(6, 8, 8)).astype(np.float32)
    assert overlay_arrays(image, labels, case_id="x").slice_index == 4
    assert overlay_arrays(image, labels, slice_index=1).slice_index == 1


def test_one_png_per_case_and_reference_doubles_the_width(raw_dataset: Path, tmp_path: Path) -> None:
    single = write_overlays(raw_dataset, raw_dataset, tmp_path / "single")
    assert [p.name for p in single] == ["case_000.png", "case_001.png", "case_002.png"]
    both = write_overlays(raw_dataset / "imagesTr", raw_dataset / "labelsTr", tmp_path / "both",
                          reference=raw_dataset / "labelsTr")  # fmt: skip
    width_single, width_both = imread(single[0]).shape[1], imread(both[0]).shape[1]
    assert width_both == 2 * width_single
    picture = imread(single[0])[..., :3]
    red = (picture[..., 0] > 0.8) & (picture[..., 1] < 0.3)  # label 1's outline colour (#e6194b)
    assert red.sum() > 20


def test_two_d_and_another_channel(tmp_path: Path) -> None:
    raw = make_synthetic_dataset(
        tmp_path, num_cases=1, shape=(24, 24), spacing=(1.0, 1.0), two_d=True, modality="mr", num_channels=2
    )
    (written,) = write_overlays(raw, raw, tmp_path / "out", channel=1)
    assert imread(written).ndim == 3
    with pytest.raises(ConfigError, match=r"overlay: channel 2 does not exist; the dataset has 2 channel\(s\)"):
        write_overlays(raw, raw, tmp_path / "out", channel=2)


def test_labels_on_another_grid_name_both_files(raw_dataset: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    seg, _ = read_segmentation(raw_dataset / "labelsTr" / "case_000.nii.gz")
    write_segmentation(seg[:, :, :-2], labels / "case_000.nii.gz", ImageGeometry.identity((2.0, 1.0, 1.0)))
    with pytest.raises(DatasetError, match=r"overlay: .*labels/case_000.nii.gz has shape .* but its image "
                                           r".*imagesTr/case_000_0000.nii.gz has shape .*Pass the image folder"):  # fmt: skip
        write_overlays(raw_dataset, labels, tmp_path / "out")


def test_missing_image_and_bad_slice_are_clear(raw_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no image case_000_0000<ending> for case 'case_000'"):
        write_overlays(tmp_path, raw_dataset / "labelsTr", tmp_path / "out")
    with pytest.raises(ConfigError, match=r"slice 99 does not exist in case_000: it has \d+ slice\(s\)"):
        write_overlays(raw_dataset, raw_dataset, tmp_path / "out", slice_index=99)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(raw_dataset / "dataset.json", empty / "notes.json")
    with pytest.raises(DatasetError, match=r"overlay: no label files in .*empty"):
        write_overlays(raw_dataset, empty, tmp_path / "out")
