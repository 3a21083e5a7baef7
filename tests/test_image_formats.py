"""PNG/BMP/TIFF reading and writing through nnseg.io, and the errors that say why a file is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from nnseg.errors import ImageIOError
from nnseg.io import ImageGeometry, read_image, read_images, read_segmentation, write_image, write_segmentation


def test_grey_png_and_bmp_round_trip_with_spacing_one(tmp_path: Path) -> None:
    pixels = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    for ending in (".png", ".bmp"):
        path = tmp_path / f"case_0000{ending}"
        write_image(pixels, path, ImageGeometry.identity((1.0, 1.0)))
        array, geometry = read_image(path)
        np.testing.assert_array_equal(array, pixels[None])
        assert geometry.spacing == (999.0, 1.0, 1.0)


def test_rgb_png_is_three_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c_0000.png")
    images, _ = read_images([tmp_path / "c_0000.png"])
    assert images.shape == (3, 1, 9, 7)
    np.testing.assert_array_equal(images[1, 0], rgb[..., 1])
    with pytest.raises(ImageIOError, match=r"c_0000.png has 3 colour channels; expected one channel here"):
        read_image(tmp_path / "c_0000.png")


def test_label_png_round_trip(tmp_path: Path) -> None:
    seg = np.zeros((1, 1, 8, 8), np.uint8)
    seg[0, 0, 2:5, 3:6] = 2
    write_segmentation(seg, tmp_path / "c.png", ImageGeometry.identity((1.0, 1.0)))
    array, _ = read_segmentation(tmp_path / "c.png")
    np.testing.assert_array_equal(array, seg)


def test_2d_tiff_and_3d_tiff_with_sidecar(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "flat_0000.tif", np.ones((6, 5), np.float32))
    assert read_image(tmp_path / "flat_0000.tif")[0].shape == (1, 6, 5)
    volume = np.random.default_rng(1).normal(size=(4, 6, 5)).astype(np.float32)
    write_image(volume, tmp_path / "vol_0000.tif", ImageGeometry.identity((3.0, 0.5, 0.7)))
    assert json.loads((tmp_path / "vol.json").read_text()) == {"spacing": [3.0, 0.5, 0.7]}
    array, geometry = read_image(tmp_path / "vol_0000.tif")
    np.testing.assert_array_equal(array, volume)
    assert geometry.spacing == (3.0, 0.5, 0.7)


def test_3d_tiff_without_sidecar_is_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "case_0000.tif", np.zeros((4, 6, 5), np.int16), photometric="minisblack")
    with pytest.raises(ImageIOError, match=r"3D TIFF .*case_0000.tif has no spacing sidecar; expected .*/case.json "
                                           r'holding \{"spacing": \[z, y, x\]\}'):  # fmt: skip
        read_image(tmp_path / "case_0000.tif")


def test_16_bit_png_with_alpha_is_refused(tmp_path: Path) -> None:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    # 2x2 grey+alpha at 16 bit (colour type 4, depth 16): Pillow cannot write it, so build the bytes
    header = (2).to_bytes(4, "big") * 2 + bytes([16, 4, 0, 0, 0])
    rows = b"".join(b"\x00" + b"\x01\x00\xff\xff" * 2 for _ in range(2))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    (tmp_path / "a_0000.png").write_bytes(png)
    with pytest.raises(ImageIOError, match=r"a_0000.png is a 16-bit image with an alpha channel; expected grey or RGB "
                                           r"without alpha"):  # fmt: skip
        read_image(tmp_path / "a_0000.png")


@pytest.mark.parametrize("ending", [".jpg", ".jpeg", ".JPG"])
def test_lossy_formats_are_refused_with_the_reason(tmp_path: Path, ending: str) -> None:
    with pytest.raises(ImageIOError, match=r"is a lossy format, so its intensities .* are altered by compression"):
        read_image(tmp_path / f"x{ending}")
