"""Image and label IO: exact geometry round trips, 2D handling, label dtypes, error messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given
from hypothesis import strategies as st

from nnseg.errors import ImageIOError
from nnseg.io import (
    SUPPORTED_ENDINGS,
    ImageGeometry,
    read_image,
    read_images,
    read_segmentation,
    smallest_label_dtype,
    write_image,
    write_segmentation,
)

# Values that every format stores exactly (NIfTI keeps float32): a proper and an improper signed permutation.
ROTATED = ImageGeometry(
    itk_spacing=(0.5, 1.25, 3.0),
    itk_origin=(10.5, -3.25, 7.75),
    itk_direction=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0),
)
MIRRORED = dataclasses.replace(ROTATED, itk_direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


@pytest.mark.parametrize("ending", SUPPORTED_ENDINGS)
@pytest.mark.parametrize("geometry", [ROTATED, MIRRORED], ids=["rotated", "mirrored"])
def test_round_trip_keeps_values_and_geometry_exactly(tmp_path: Path, ending: str, geometry: ImageGeometry) -> None:
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) - 7.5
    path = tmp_path / f"img{ending}"
    write_image(array, path, geometry)
    read, read_geometry = read_image(path)
    assert read_geometry == geometry
    assert read.dtype == np.float32
    assert np.array_equal(read, array)
    assert read_geometry.spacing == (3.0, 1.25, 0.5)  # array order (z, y, x)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(("ending", "atol"), [(".mha", 0.0), (".nrrd", 1e-15)])
def test_mha_and_nrrd_keep_float64_geometry_with_any_rotation(tmp_path: Path, ending: str, atol: float) -> None:
    angle = 0.3
    c, s = np.cos(angle), np.sin(angle)
    geometry = ImageGeometry((0.7, 1.3, 2.9), (10.1, -3.3, 7.7), (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    write_image(np.zeros((4, 5, 6), np.int16), tmp_path / f"a{ending}", geometry)
    read_geometry = read_image(tmp_path / f"a{ending}")[1]
    assert read_geometry.itk_origin == geometry.itk_origin
    # .mha is exact; .nrrd stores spacing x direction, so it is exact up to one rounding step
    for field in ("itk_spacing", "itk_direction"):
        assert np.allclose(getattr(read_geometry, field), getattr(geometry, field), rtol=0, atol=atol)


def test_nifti_geometry_is_stable_after_the_first_write(tmp_path: Path) -> None:
    geometry = ImageGeometry((0.7, 1.3, 2.9), (10.1, -3.3, 7.7), ROTATED.itk_direction)
    write_image(np.zeros((4, 5, 6), np.int16), tmp_path / "a.nii.gz", geometry)
    stored = read_image(tmp_path / "a.nii.gz")[1]  # float32-rounded once
    assert np.allclose(stored.itk_spacing, geometry.itk_spacing, rtol=1e-7)
    write_image(np.zeros((4, 5, 6), np.int16), tmp_path / "b.nii.gz", stored)
    assert read_image(tmp_path / "b.nii.gz")[1] == stored


@pytest.mark.parametrize("ending", SUPPORTED_ENDINGS)
def test_2d_images_are_c_1_y_x_with_pseudo_spacing(tmp_path: Path, ending: str) -> None:
    geometry = ImageGeometry((0.5, 1.25), (1.5, 2.5), (0.0, 1.0, 1.0, 0.0))
    image = np.arange(30, dtype=np.float32).reshape(1, 5, 6)
    for channel in range(2):
        write_image(image + channel, tmp_path / f"c_{channel:04d}{ending}", geometry)
    write_segmentation((image > 10).astype(np.uint8), tmp_path / f"c{ending}", geometry)
    images, read_geometry = read_images([tmp_path / f"c_{i:04d}{ending}" for i in range(2)])
    assert images.shape == (2, 1, 5, 6)
    assert np.array_equal(images[1], image + 1)
    assert read_geometry == geometry
    assert read_geometry.ndim == 2
    assert read_geometry.spacing == (999 * 1.25, 1.25, 0.5)
    seg, _ = read_segmentation(tmp_path / f"c{ending}")
    assert seg.shape == (1, 1, 5, 6)
    assert seg.sum() == 19


@pytest.mark.parametrize(("max_value", "dtype"), [(1, np.uint8), (255, np.uint8), (256, np.uint16), (70000, np.uint32)])
def test_labels_are_written_in_the_smallest_unsigned_type(tmp_path: Path, max_value: int, dtype: type) -> None:
    seg = np.zeros((2, 3, 4), np.int64)
    seg[0, 0, 0] = max_value
    write_segmentation(seg[None], tmp_path / "s.nii.gz", ImageGeometry.identity((1.0, 1.0, 1.0)))
    read, _ = read_segmentation(tmp_path / "s.nii.gz")
    assert read.dtype == dtype
    assert read.shape == (1, 2, 3, 4)
    assert read.max() == max_value


@given(st.integers(0, 2**63 - 1))
def test_smallest_label_dtype_is_the_smallest_that_fits(max_value: int) -> None:
    dtype = smallest_label_dtype(max_value)
    candidates = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)]
    assert max_value <= np.iinfo(dtype).max
    assert all(max_value > np.iinfo(t).max for t in candidates[: candidates.index(dtype)])


def test_float_labels_with_integral_values_are_converted(tmp_path: Path) -> None:
    write_image(np.array([[[0.0, 1.0, 2.0]]], np.float32), tmp_path / "s.mha", ImageGeometry.identity((1, 1, 1)))
    seg, _ = read_segmentation(tmp_path / "s.mha")
    assert seg.dtype == np.int32
    assert seg.tolist() == [[[[0, 1, 2]]]]


def test_geometry_json_round_trip() -> None:
    assert ImageGeometry.from_json(ROTATED.to_json()) == ROTATED
    assert ImageGeometry.identity((3.0, 2.0, 1.0)) == ImageGeometry(
        (1.0, 2.0, 3.0), (0.0,) * 3, tuple(np.eye(3).ravel())
    )


def test_missing_empty_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ImageIOError, match=rf"image file {tmp_path}/nope\.nii\.gz does not exist; expected a readable"):
        read_image(tmp_path / "nope.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(ImageIOError, match=r"empty\.nii\.gz is empty \(0 bytes\); expected an image\. Re-export"):
        read_image(tmp_path / "empty.nii.gz")
    (tmp_path / "bad.mha").write_bytes(b"garbage" * 20)
    with pytest.raises(
        ImageIOError,
        match=r"cannot read image file .*bad\.mha: SimpleITK failed \(.*\)\. Check that "
        r"the file is complete and not corrupt\.",
    ):
        read_image(tmp_path / "bad.mha")
    with pytest.raises(ImageIOError, match=r"unsupported file ending; expected one of \.nii\.gz, \.nii, \.nrrd, \.mha"):
        read_image(tmp_path / "x.gif")
    with pytest.raises(OSError):  # ImageIOError is an OSError
        read_image(tmp_path / "nope.nii")


def test_4d_and_vector_files_are_rejected(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False), str(tmp_path / "a.nii"))
    with pytest.raises(ImageIOError, match=r"a\.nii is 4D \(size \(5, 4, 3, 2\)\); expected a 3D \(or 2D\) image"):
        read_image(tmp_path / "a.nii")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 3), np.float32), isVector=True), str(tmp_path / "rgb.mha"))
    with pytest.raises(ImageIOError, match=r"rgb\.mha has 3 components per pixel; expected a scalar image"):
        read_image(tmp_path / "rgb.mha")


def test_channels_must_agree(tmp_path: Path) -> None:
    geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
    write_image(np.zeros((2, 3, 4)), tmp_path / "a.mha", geometry)
    write_image(np.zeros((2, 3, 5)), tmp_path / "b.mha", geometry)
    write_image(np.zeros((2, 3, 4)), tmp_path / "c.mha", ImageGeometry.identity((1.0, 1.0, 2.0)))
    with pytest.raises(
        ImageIOError,
        match=r"b\.mha has shape \(2, 3, 5\) but .*a\.mha has \(2, 3, 4\); expected every "
        r"channel of a case to have the same shape\. Resample the channels onto one grid; `nnseg "
        r"verify RAW_DIR` lists every such case\.",
    ):
        read_images([tmp_path / "a.mha", tmp_path / "b.mha"])
    with pytest.raises(
        ImageIOError,
        match=r"c\.mha has spacing \(2\.0, 1\.0, 1\.0\) but .*a\.mha has \(1\.0, 1\.0, 1\.0\); "
        r"expected every channel of a case to share one spacing\. Resample",
    ):
        read_images([tmp_path / "a.mha", tmp_path / "c.mha"])
    with pytest.raises(ImageIOError, match="read_images got no paths"):
        read_images([])


def test_label_errors(tmp_path: Path) -> None:
    geometry = ImageGeometry.identity((1.0, 1.0, 1.0))
    write_image(np.full((2, 2, 2), 0.5, np.float32), tmp_path / "f.mha", geometry)
    with pytest.raises(ImageIOError, match=r"f\.mha holds non-integer values \(dtype float32\); expected integer"):
        read_segmentation(tmp_path / "f.mha")
    with pytest.raises(ImageIOError, match=r"it holds the negative value -1; expected label values >= 0\. Map"):
        write_segmentation(np.full((2, 2, 2), -1), tmp_path / "n.mha", geometry)
    with pytest.raises(ImageIOError, match=r"array of shape \(2, 2\) does not match a 3D geometry"):
        write_image(np.zeros((2, 2)), tmp_path / "w.mha", geometry)


def test_write_into_a_missing_folder_says_what_to_check(tmp_path: Path) -> None:
    path = tmp_path / "no_such_folder" / "x.nii.gz"
    with pytest.raises(
        ImageIOError,
        match=rf"cannot write image file {path}: the folder {path.parent} does not exist; "
        r"expected a writable folder\. Create it first",
    ):
        write_image(np.zeros((2, 2, 2)), path, ImageGeometry.identity((1.0, 1.0, 1.0)))
    assert not path.parent.exists()


def _nibabel_file(path: Path, values: np.ndarray, *, big_endian: bool = False, slope: float | None = None) -> Path:
    import nibabel as nib

    affine = np.array([[0.0, -0.8, 0, 3], [0.9, 0, 0, -2], [0, 0, 2.5, 7], [0, 0, 0, 1]])  # a rotation
    image = nib.Nifti1Image(values, affine)
    if slope is not None:
        image.header.set_slope_inter(slope, 1.5)
    if big_endian:
        image = image.__class__(values.astype(values.dtype.newbyteorder(">")), affine,
                                image.header.as_byteswapped(">"))  # fmt: skip
    nib.save(image, path)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_nifti_read_with_one_decompression_equals_simpleitk(tmp_path: Path, dtype: type, ending: str) -> None:
    values = (np.random.default_rng(3).random((5, 7, 6)) * 100).astype(dtype)  # nibabel order (x, y, z)
    files = [_nibabel_file(tmp_path / f"plain{ending}", values),
             _nibabel_file(tmp_path / f"big{ending}", values, big_endian=True),
             _nibabel_file(tmp_path / f"scaled{ending}", values, slope=2.0),  # SimpleITK converts: its own read
             _nibabel_file(tmp_path / f"flat{ending}", values[:, :, :1])]  # fmt: skip
    geometry = ImageGeometry((0.7, 0.8, 3.0), (1.0, -2.0, 5.0), (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    write_image(values[..., 0].T[None], tmp_path / f"sitk_2d{ending}", dataclasses.replace(
        geometry, itk_spacing=(0.7, 0.8), itk_origin=(1.0, 2.0), itk_direction=(0.0, -1.0, 1.0, 0.0)))  # fmt: skip
    write_image(values.T, tmp_path / f"sitk_3d{ending}", geometry)
    files += [tmp_path / f"sitk_2d{ending}", tmp_path / f"sitk_3d{ending}"]
    for path in files:
        array, got = read_image(path)
        image = sitk.ReadImage(str(path))
        expected = sitk.GetArrayFromImage(image)
        expected = expected[None] if image.GetDimension() == 2 else expected
        assert array.dtype == expected.dtype, path.name
        assert array.dtype.isnative, path.name
        np.testing.assert_array_equal(array, expected, err_msg=path.name)
        assert repr(got) == repr(ImageGeometry.from_itk(image)), path.name  # repr: also the signs of zeros
        assert array.flags.writeable, path.name
