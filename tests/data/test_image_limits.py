"""The image size limit: decompression bombs are refused before decoding, with one message."""
from __future__ import annotations

import re
import struct
import warnings
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from medpeft.data import DataError
from medpeft.data.decode import MAX_PIXELS_ENV, max_image_pixels, read_image, set_max_image_pixels

from .test_decode import write_dicom, write_png

PILLOW_DEFAULT_LIMIT = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS as Pillow ships it


@pytest.fixture(autouse=True)
def restore_limit(monkeypatch):
    """Every test starts at Pillow's default limit and leaves it as it found it."""
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)


def dicom_bomb(path, rows=20000, columns=20000):
    """An RLE DICOM whose header says rows x columns, with a few bytes of (bogus) pixel data."""
    write_dicom(path, np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.Rows, ds.Columns = rows, columns
    header = struct.pack("<16I", 2, 64, 70, *[0] * 13)  # two segments, as 16-bit data needs
    ds.PixelData = encapsulate([header + b"\x81\x00" * 6])  # runs of zeros, far too short
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def png_bomb(path, width=20000, height=20000):
    """A PNG whose header says width x height (1-bit), with a tiny compressed stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))
    return path


class PixelDecodes:
    """Every call into pydicom's pixel decoders (``Decoder.as_array``/``iter_array``: what
    ``Dataset.pixel_array`` and ``pydicom.pixels.pixel_array`` decode with), by image size.

    A frame of more than ``refuse`` pixels is recorded and then NOT decoded (an AssertionError
    instead), so a reader that decodes a bomb before checking fails the test without allocating
    gigabytes."""

    def __init__(self, monkeypatch, refuse: int = 1_000_000):
        from pydicom.pixels.decoders.base import Decoder

        self.calls: list[tuple[int, int]] = []
        for name in ("as_array", "iter_array"):
            real = getattr(Decoder, name)

            def spy(decoder, src, *args, _real=real, **kwargs):
                shape = (int(src.Rows), int(src.Columns)) if hasattr(src, "Rows") else (-1, -1)
                self.calls.append(shape)
                if shape[0] * shape[1] > refuse:
                    raise AssertionError(f"pixel data of a {shape[0]}x{shape[1]} image was decoded")
                return _real(decoder, src, *args, **kwargs)

            monkeypatch.setattr(Decoder, name, spy)


def test_dicom_bomb_is_refused_from_its_header_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    decodes = PixelDecodes(monkeypatch)
    small = write_dicom(tmp_path / "small.dcm", np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert read_image(small).shape == (3, 4)
    assert decodes.calls == [(3, 4)]  # the control: an image under the limit goes through the spy
    path = dicom_bomb(tmp_path / "bomb.dcm")
    assert path.stat().st_size < 2000
    with pytest.raises(DataError) as err:
        read_image(path)
    assert decodes.calls == [(3, 4)], "the bomb's pixel data reached a decoder"
    assert str(err.value).startswith(f"{path}: the image is 20000x20000 = 400,000,000 pixels, "
                                     "above the limit of 89,478,485 pixels per image")
    assert MAX_PIXELS_ENV in str(err.value)
    # the bomb's pixel data is a few bytes of RLE runs: decoded, it is an error of another kind
    # (not the size limit), so the message above can only come from the header check
    with pytest.raises(DataError, match="cannot decode the DICOM pixel data"):
        read_image(dicom_bomb(tmp_path / "bomb-2.dcm", rows=64, columns=64))
    assert decodes.calls == [(3, 4), (64, 64)]


def test_png_bombs_give_the_same_data_error_and_no_pillow_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Pillow DecompressionBombWarning would fail the test
        with pytest.raises(DataError) as huge:  # > 2x the limit: Pillow itself refuses it
            read_image(png_bomb(tmp_path / "huge.png"))
        set_max_image_pixels(1000)
        write_png(tmp_path / "small.png", np.zeros((30, 30), np.uint8))  # 900 pixels: fine
        assert read_image(tmp_path / "small.png").shape == (30, 30)
        write_png(tmp_path / "over.png", np.zeros((40, 50), np.uint8))  # 2000: Pillow only warns
        with pytest.raises(DataError) as over:
            read_image(tmp_path / "over.png")
        write_dicom(tmp_path / "over.dcm", np.zeros((40, 50), np.uint16))
        with pytest.raises(DataError) as dicom:
            read_image(tmp_path / "over.dcm")
    assert str(huge.value).startswith(f"{tmp_path / 'huge.png'}: the image is 400,000,000 pixels, "
                                      "above the limit of 89,478,485 pixels per image")
    template = "{}: the image is 50x40 = 2,000 pixels, above the limit of 1,000 pixels per image"
    assert str(over.value).startswith(template.format(tmp_path / "over.png"))
    assert str(dicom.value).startswith(template.format(tmp_path / "over.dcm"))
    tail = lambda err: re.sub(r"^.*? pixels per image", "", str(err.value))  # noqa: E731
    assert tail(huge) == tail(over) == tail(dicom)


def test_the_limit_is_set_in_one_place(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "wide.dcm", np.zeros((10, 300), np.uint16))
    assert max_image_pixels() == PILLOW_DEFAULT_LIMIT == Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "2_000")
    with pytest.raises(DataError, match="300x10 = 3,000 pixels, above the limit of 2,000"):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS == 2000  # Pillow's check follows, so PNGs share the limit
    monkeypatch.setenv(MAX_PIXELS_ENV, "none")
    assert read_image(path).shape == (10, 300) and Image.MAX_IMAGE_PIXELS is None
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MAX_PIXELS_ENV} must be a whole number"):
        read_image(path)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    set_max_image_pixels(3000)
    assert read_image(path).shape == (10, 300)
    with pytest.raises(ValueError, match="positive whole number"):
        set_max_image_pixels(0)
