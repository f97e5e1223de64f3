"""decode_image: an upload held in memory decodes exactly as the same file read from disk, and
the failures a server must tell apart (too large, not an image, corrupt) are distinct errors."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medpeft.data.base import DataError, ImageTooLarge, UnsupportedImage
from medpeft.data.decode import decode_image, read_image

from .test_decode import write_dicom, write_png
from .test_image_limits import PILLOW_DEFAULT_LIMIT, dicom_bomb, png_bomb


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)


def ramp(dtype=np.uint8, scale=4) -> np.ndarray:
    return (np.arange(64, dtype=np.int64).reshape(8, 8) * scale).astype(dtype)


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x16.png"])
def test_pillow_bytes_decode_as_the_file(tmp_path, name):
    pixels = ramp(np.uint16, 1000) if name == "x16.png" else ramp()
    path = write_png(tmp_path / name, pixels)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), name), read_image(path))
    np.testing.assert_array_equal(decode_image(path.read_bytes()), read_image(path))  # the name is not needed


def test_dicom_bytes_decode_as_the_file_with_or_without_a_name(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", ramp(np.uint16, 300), WindowCenter=9000, WindowWidth=12000)
    expected = read_image(path)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), "x.dcm"), expected)
    np.testing.assert_array_equal(decode_image(path.read_bytes(), "noname"), expected)  # by its DICM magic


@pytest.mark.parametrize("data", [b"", b"this is not a picture", b"\x89PNX" + b"\x00" * 300])
def test_bytes_in_no_image_format_are_unsupported(data):
    with pytest.raises(UnsupportedImage, match="upload.png: "):
        decode_image(data, "upload.png")


def test_a_truncated_image_is_a_decoding_error_not_unsupported(tmp_path):
    data = write_png(tmp_path / "x.png", np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).read_bytes()
    with pytest.raises(DataError, match="cut.png: cannot decode") as err:
        decode_image(data[: len(data) // 2], "cut.png")
    assert not isinstance(err.value, (UnsupportedImage, ImageTooLarge))


def test_bombs_in_memory_are_refused_before_decoding(tmp_path):
    with pytest.raises(ImageTooLarge, match="400,000,000 pixels, above the limit"):
        decode_image(png_bomb(tmp_path / "b.png").read_bytes(), "b.png")
    with pytest.raises(ImageTooLarge, match="20000x20000 = 400,000,000 pixels"):
        decode_image(dicom_bomb(tmp_path / "b.dcm").read_bytes(), "b.dcm")
    with pytest.raises(ImageTooLarge):  # the same error type from a file on disk
        read_image(png_bomb(tmp_path / "c.png"))
