"""read_image: PNG/JPEG through Pillow, DICOM through pydicom's pixel pipeline, clear errors."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage,
                         generate_uid)

from medpeft.data.base import DataError, FileImages
from medpeft.data.decode import probe_channels, read_image


def write_png(path, array: np.ndarray):
    """Any format Pillow writes, by the file's extension."""
    Image.fromarray(array).save(path)
    return path


def write_dicom(path, pixels: np.ndarray, photometric: str = "MONOCHROME2",
                bits_stored: int | None = None, **elements):
    """A minimal DICOM Part 10 file: (H, W), (frames, H, W) or (H, W, 3) uint8/uint16 pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    colour = photometric == "RGB"
    if colour:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    else:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------- Pillow files
def test_png_8bit_grayscale(tmp_path):
    array = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    image = read_image(write_png(tmp_path / "a.png", array))
    assert image.dtype == np.float32 and image.shape == (6, 8)
    np.testing.assert_allclose(image, array / 255.0, atol=1e-6)


def test_png_16bit_scaled_by_its_bit_depth(tmp_path):
    array = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = write_png(tmp_path / "deep.png", array)
    with Image.open(path) as image:
        assert image.mode.startswith("I")
    np.testing.assert_allclose(read_image(path), array / 65535.0, atol=1e-6)


def test_jpeg_grayscale_and_colour(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    gray = read_image(write_png(tmp_path / "g.jpg", ramp))
    assert gray.shape == (16, 32)
    assert np.abs(gray - ramp / 255.0).max() < 0.05  # lossy
    colour = read_image(write_png(tmp_path / "c.jpeg", np.stack([ramp, ramp[:, ::-1], ramp], -1)))
    assert colour.shape == (16, 32, 3) and 0.0 <= colour.min() and colour.max() <= 1.0


def test_rgb_rgba_palette_and_la(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    expected = rgb / 255.0
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 7, np.uint8)], -1)
    for name, array in (("rgb.png", rgb), ("rgba.png", rgba)):  # alpha dropped
        np.testing.assert_allclose(read_image(write_png(tmp_path / name, array)), expected, atol=1e-6)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (5, 7, 3)
    la = Image.fromarray(rgb[..., 0]).convert("LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), rgb[..., 0] / 255.0, atol=1e-6)


# ----------------------------------------------------------------------------- DICOM files
def test_dicom_monochrome2_min_max(tmp_path):
    stored = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "m2.dcm", stored))
    assert image.dtype == np.float32 and image.shape == (2, 2)
    np.testing.assert_allclose(image, (stored - 100) / 1000.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    stored = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    assert image[1, 1] == 0.0  # the brightest stored value becomes black
    assert image[0, 0] == 1.0
    np.testing.assert_allclose(image, 1.0 - (stored - 100) / 1000.0, atol=1e-6)


def test_dicom_8bit(tmp_path):
    stored = np.array([[0, 64], [128, 255]], dtype=np.uint8)
    np.testing.assert_allclose(read_image(write_dicom(tmp_path / "8.dcm", stored)), stored / 255.0,
                               atol=1e-6)


def test_dicom_bits_stored_12_ignores_the_unused_high_bits(tmp_path):
    stored = np.array([[0, 2048], [4095, 0xF000 | 1024]], dtype=np.uint16)  # junk in bits 12-15
    image = read_image(write_dicom(tmp_path / "12.dcm", stored, bits_stored=12))
    np.testing.assert_allclose(image, [[0.0, 2048 / 4095], [1.0, 1024 / 4095]], atol=1e-6)


def test_dicom_rescale_is_applied_before_the_window(tmp_path):
    # Stored 500 is 2 * 500 - 1000 = 0 HU: the centre of a [-200, 200] HU window.
    stored = np.array([[400, 500], [600, 2000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope=2, RescaleIntercept=-1000,
                       WindowCenter=0, WindowWidth=400)
    image = read_image(path)
    assert image[0, 0] == pytest.approx(0.0, abs=0.01)  # -200 HU: lower edge
    assert image[0, 1] == pytest.approx(0.5, abs=0.01)  # 0 HU: centre
    assert image[1, 0] == pytest.approx(1.0, abs=0.01)  # 200 HU: upper edge
    assert image[1, 1] == 1.0  # 3000 HU: clipped


def test_dicom_window_clips(tmp_path):
    stored = np.array([[0, 1500, 1750], [2000, 2500, 4000]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "w.dcm", stored, WindowCenter=2000, WindowWidth=1000))
    assert image[0, 0] == 0.0 and image[0, 1] == 0.0  # below the window
    assert image[1, 2] == 1.0 and image[1, 1] == pytest.approx(1.0, abs=1e-3)  # above
    assert image[0, 2] == pytest.approx(0.25, abs=0.01)
    assert image[1, 0] == pytest.approx(0.5, abs=0.01)


def test_dicom_voi_lut_sequence(tmp_path):
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 8])  # 4 entries, first value 0, 8-bit output
    item.add_new("LUTData", "US", [0, 51, 204, 255])
    stored = np.array([[0, 1], [2, 9]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "lut.dcm", stored, VOILUTSequence=Sequence([item])))
    np.testing.assert_allclose(image, [[0.0, 0.2], [0.8, 1.0]], atol=1e-6)


def test_dicom_multiframe_gives_the_first_frame(tmp_path):
    frames = np.array([[[0, 10], [20, 30]], [[30, 20], [10, 0]]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "mf.dcm", frames))
    np.testing.assert_allclose(image, [[0, 1 / 3], [2 / 3, 1]], atol=1e-6)


def test_dicom_rgb(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = read_image(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB"))
    assert image.shape == (4, 5, 3)
    np.testing.assert_allclose(image, rgb / 255.0, atol=1e-6)


def test_dicom_recognised_by_its_preamble_whatever_the_name(tmp_path):
    stored = np.array([[1, 2], [3, 5]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "scan.img", stored))
    np.testing.assert_allclose(image, [[0, 0.25], [0.5, 1]], atol=1e-6)


def test_probe_channels(tmp_path):
    gray = write_png(tmp_path / "g.png", np.zeros((3, 3), np.uint8))
    rgb = write_png(tmp_path / "c.png", np.zeros((3, 3, 3), np.uint8))
    assert probe_channels([str(tmp_path / "missing.png"), str(rgb)]) == 3
    assert probe_channels([str(gray)]) == 1
    assert probe_channels([str(tmp_path / "missing.png")], default=1) == 1


# ----------------------------------------------------------------------------- failures
def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.png"
    with pytest.raises(DataError, match="not found") as err:
        read_image(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_png_and_jpeg(tmp_path, name):
    ramp = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    path = write_png(tmp_path / name, ramp)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot decode") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(DataError, match="cannot decode") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_truncated_dicom_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "cut.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match="pixel data") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_garbage_dicom(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x13\x37" * 20)
    with pytest.raises(DataError) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "report.dcm", np.zeros((2, 2), np.uint16))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(DataError, match="no pixel data") as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_file_images_add_the_list_line(tmp_path):
    images = FileImages([str(tmp_path / "gone.png")], ["lists/train_list.txt:7"])
    with pytest.raises(DataError, match="train_list.txt:7") as err:
        images.load(0)
    assert "gone.png" in str(err.value)


def test_dicom_jpeg_baseline_compressed(tmp_path):
    """Compressed pixel data (JPEG baseline, decoded by pydicom's Pillow plugin)."""
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="JPEG", quality=95)
    path = write_dicom(tmp_path / "jpeg.dcm", ramp)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    image = read_image(path)
    assert image.shape == (16, 32)
    assert np.abs(image - ramp / 255.0).max() < 0.05
