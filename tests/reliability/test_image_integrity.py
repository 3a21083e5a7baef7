"""Broken image files are named errors at every read, never zeros: truncated or corrupt streams,
NaN/inf stored in the file, zero/negative/non-finite spacings, non-orthonormal directions."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from nnseg._integrity import count_nonfinite, scan_nifti
from nnseg.dataset import RawDataset
from nnseg.errors import ImageIOError, NnsegError
from nnseg.fingerprint import extract_fingerprint
from nnseg.io import ImageGeometry, read_image, read_images, read_segmentation, write_image
from nnseg.testing import make_synthetic_dataset

GEOMETRY = ImageGeometry.identity((2.0, 1.0, 0.5))
PIXDIM_OFFSET = 76  # NIfTI-1: float32 pixdim[8] starts here


def _image(seed: int = 0, shape: tuple[int, ...] = (6, 7, 8)) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 20.0, shape).astype(np.float32)


def _written(tmp_path: Path, name: str, array: np.ndarray | None = None) -> Path:
    path = tmp_path / name
    write_image(_image() if array is None else array, path, GEOMETRY)
    return path


def _truncate(path: Path, fraction: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_truncated_nii_gz_is_an_error_not_zeros(tmp_path: Path) -> None:
    path = _truncate(_written(tmp_path, "a.nii.gz"))
    with pytest.raises(
        ImageIOError,
        match=r"a\.nii\.gz is damaged: its compressed stream is broken \(the compressed "
        r"stream ended before its end-of-stream marker\); its missing or corrupt voxels would be read "
        r"as zeros\. Re-copy or re-export the file",
    ):
        read_image(path)


def test_truncated_uncompressed_nii(tmp_path: Path) -> None:
    path = _truncate(_written(tmp_path, "a.nii"))
    with pytest.raises(
        ImageIOError,
        match=r"a\.nii is damaged: it holds \d+ of the 1344 data bytes its header "
        r"announces",
    ):
        read_image(path)


def test_gzip_checksum_failure(tmp_path: Path) -> None:
    path = _written(tmp_path, "a.nii.gz", np.zeros((6, 7, 8), np.float32))
    raw = gzip.decompress(path.read_bytes())
    data = bytearray(gzip.compress(raw, mtime=0))
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(
        ImageIOError,
        match=r"a\.nii\.gz is damaged: its compressed stream is broken \(.*incorrect "
        r"data check\)",
    ):
        read_image(path)


def test_complete_gzip_of_a_short_nifti(tmp_path: Path) -> None:
    path = _written(tmp_path, "a.nii.gz")
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))  # a valid stream that holds too few voxels
    with pytest.raises(ImageIOError, match=r"it holds 1244 of the 1344 data bytes its header announces"):
        read_image(path)


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nan_written_with_nibabel_is_found_in_the_stored_values(tmp_path: Path, ending: str) -> None:
    array = _image()
    array[1, 2, 3], array[0, 0, 0], array[5, 6, 7] = np.nan, np.inf, -np.inf
    path = tmp_path / f"n{ending}"
    nib.save(nib.Nifti1Image(array.T, np.diag([0.5, 1.0, 2.0, 1.0])), path)
    escaped = re.escape(f"n{ending}")
    with pytest.raises(
        ImageIOError,
        match=rf"{escaped} holds 1 NaN and 2 infinite value\(s\); "
        r"expected finite intensities\. Replace them in the file",
    ):
        read_images([path])


def test_scaled_integer_nifti_is_not_checked_for_nan(tmp_path: Path) -> None:
    path = tmp_path / "i.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(336, dtype=np.int16).reshape(8, 7, 6), np.eye(4)), path)
    scan_nifti(path)  # integers cannot be NaN: nothing to report
    assert read_image(path)[0].shape == (6, 7, 8)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_pixdim_in_a_nifti_header(tmp_path: Path, value: float) -> None:
    path = _written(tmp_path, "s.nii")
    data = bytearray(path.read_bytes())
    data[PIXDIM_OFFSET + 4 : PIXDIM_OFFSET + 8] = struct.pack("<f", value)  # pixdim[1], the x spacing
    path.write_bytes(bytes(data))
    with pytest.raises(
        ImageIOError,
        match=rf"s\.nii has spacing \({value}, 1\.0, 2\.0\) \(x, y, z\); expected finite "
        r"spacings > 0 mm\. Fix the header",
    ):
        read_image(path)


def _mha_with(tmp_path: Path, old: bytes, new: bytes) -> Path:
    path = tmp_path / "g.mha"
    write_image(np.zeros((4, 5, 6), np.float32), path, ImageGeometry.identity((1.0, 1.0, 1.0)))
    # an uncompressed copy whose text header can be edited
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(path)), str(path), useCompression=False)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


def test_zero_spacing_in_a_metaimage(tmp_path: Path) -> None:
    path = _mha_with(tmp_path, b"ElementSpacing = 1 1 1", b"ElementSpacing = 0 1 1")
    with pytest.raises(
        ImageIOError,
        match=r"g\.mha has a zero or non-finite spacing \(SimpleITK: .*\); expected "
        r"finite spacings > 0 mm",
    ):
        read_image(path)


def test_non_orthonormal_direction(tmp_path: Path) -> None:
    path = _mha_with(tmp_path, b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0.5 0 0 1 0 0 0 1")
    with pytest.raises(
        ImageIOError,
        match=r"g\.mha has a direction matrix \(1\.0, 0\.0, 0\.0, 0\.5, 1\.0, 0\.0, 0\.0, "
        r"0\.0, 1\.0\) that is not orthonormal \(largest deviation of D @ D\.T from the identity: 0\.5, "
        r"tolerance 0\.0001\); expected a rotation or reflection",
    ):
        read_image(path)


def test_fractional_label_values(tmp_path: Path) -> None:
    path = _written(tmp_path, "l.nii.gz", np.full((6, 7, 8), 0.5, np.float32))
    with pytest.raises(ImageIOError, match=r"l\.nii\.gz holds non-integer values \(dtype float32\)"):
        read_segmentation(path)


def test_count_nonfinite() -> None:
    assert count_nonfinite(np.array([1.0, np.nan, np.inf, -np.inf], np.float32)) == (1, 2)
    assert count_nonfinite(np.arange(5)) == (0, 0)
    assert count_nonfinite(np.ones(3, np.float64)) == (0, 0)


def test_verify_lists_every_broken_case_and_the_fingerprint_refuses_with_the_same_message(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path, num_cases=4, shape=(8, 10, 10))
    _truncate(root / "imagesTr/case_000_0000.nii.gz")
    nan_path = root / "imagesTr/case_001_0000.nii.gz"
    array, geometry = read_image(nan_path)
    array = array.astype(np.float32)
    array[0, 0, 0] = np.nan
    write_image(array, nan_path, geometry)
    dataset = RawDataset.from_folder(root)
    report = dataset.verify()
    assert [p.case_id for p in report.errors] == ["case_000", "case_001"]
    assert "imagesTr/case_000_0000.nii.gz is damaged: its compressed stream is broken" in report.errors[0].message
    nan_message = "imagesTr/case_001_0000.nii.gz holds 1 NaN and 0 infinite value(s); expected finite intensities"
    assert nan_message in report.errors[1].message
    with pytest.raises(
        NnsegError,
        match=r"case 'case_000': image file .*case_000_0000\.nii\.gz is damaged: its "
        "compressed stream is broken",
    ):
        extract_fingerprint(dataset, num_workers=1)
