"""What the server says about an uploaded image besides the answer: its size from the header
(refused above the serving pixel limit before a pixel is decoded), how its values were scaled to
[0, 1], and warnings when it is far from the run's training images.

A baseline JPEG above the serving pixel limit (a camera photo) is not refused but decoded at 1/2,
1/4 or 1/8 of its size by libjpeg's DCT scaling (Pillow's ``draft`` mode, :func:`decode_reduced`):
the largest reduction that keeps both sides at least the model's input size, so the model still
downscales and never upscales. That decode holds only the reduced image (a 9000 x 9000 photo: 8 MiB
at 1/8 instead of ~330 MiB in full). Other formats, and progressive JPEGs (libjpeg keeps all their
coefficients whatever the output size), are refused above the limit.

Scaling (``scaling`` in the response) follows :mod:`medpeft.data.decode`: 8-bit images are
divided by 255, 16-bit by 65535; a DICOM goes through its VOI LUT or window when the file has
one, else it is stretched by its own min-max (so the same pixels as a DICOM without a window and
as a PNG can score differently: the response says which happened).

Warnings (``warnings``; the decision is given all the same): an image much smaller than the
model's input or than the training images (a 1x1 PNG), a very elongated one, a (nearly) uniform
one, and a mean or standard deviation of its [0, 1] values more than :data:`FAR` spreads away
from the training images' (measured on up to :data:`REFERENCE_IMAGES` training images when the
server starts, if the run's training data is readable there).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.base import DataError
from ..data.decode import DICOM_SUFFIXES, max_image_pixels, open_pillow

REFERENCE_IMAGES = 256  # training images measured per run for the intensity reference
FAR = 4.0  # how many spreads (standard deviations) from the training images' statistics is "far"
MIN_SPREAD = 0.02  # floor of a spread, so a very uniform training set does not flag everything


@dataclass
class Header:
    width: int
    height: int
    scaling: str  # how decoding maps the stored values to [0, 1]
    format: str = ""  # Pillow's format name (JPEG, PNG, ...) or DICOM


def read_header(data: bytes, name: str) -> Header | None:
    """Size and scaling from the header alone (no pixel decoded); None when the bytes are not an
    image medpeft reads (decoding then says why)."""
    try:
        if data[128:132] == b"DICM" or Path(name).suffix.lower() in DICOM_SUFFIXES:
            return _dicom_header(data, force=data[128:132] != b"DICM")
        with open_pillow(io.BytesIO(data), name, None) as image:
            return Header(*image.size, _pillow_scaling(image.mode), image.format or "")
    except Exception:  # noqa: BLE001 - a bad file is reported by decode_image with its reason
        return None


def _pillow_scaling(mode: str) -> str:
    if mode.startswith("I;16"):
        return "16-bit values divided by 65535"
    if mode == "I":
        return "32-bit integers divided by 65535 (by their own min-max when outside 0-65535)"
    if mode == "F":
        return "floating-point values as they are (by their own min-max when outside 0-1)"
    return "8-bit values divided by 255"


def _dicom_header(data: bytes, force: bool) -> Header:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=force)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        scaling = "DICOM palette colour lookup table"
    elif int(ds.get("SamplesPerPixel", 1)) > 1:
        scaling = f"DICOM colour divided by 2^{int(ds.get('BitsStored', 8))} - 1"
    elif ds.get("VOILUTSequence"):
        scaling = "DICOM VOI lookup table from the file"
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        scaling = f"DICOM window from the file (centre {_first(ds.WindowCenter)}, width {_first(ds.WindowWidth)})"
    else:
        scaling = ("DICOM min-max: the file has no window, so its darkest value became 0 and its brightest 1 "
                   "(a PNG of the same pixels is divided by 255 instead and can score differently)")
    if photometric == "MONOCHROME1":
        scaling += ", inverted (MONOCHROME1)"
    return Header(int(ds.Columns), int(ds.Rows), scaling, "DICOM")


JPEG_MAGIC = b"\xff\xd8\xff"  # start of image, then the first marker


class NotReducible(Exception):
    """An image over the serving pixel limit that cannot be decoded at a reduced size (the reason)."""


def decode_reduced(data: bytes, name: str, limit: int, min_side: int) -> tuple[np.ndarray, int]:
    """A baseline JPEG decoded at 1/2, 1/4 or 1/8 of its size (Pillow's ``draft``): the largest
    reduction that keeps both sides at least ``min_side``; (image in [0, 1] as decoding gives it,
    the reduction). :class:`NotReducible` when the file is not a baseline JPEG or the reduced image
    would still be above ``limit`` pixels; :class:`DataError` when it cannot be decoded."""
    from PIL import JpegImagePlugin

    if not data.startswith(JPEG_MAGIC):  # a PNG, TIFF, DICOM ... (Pillow may not even open it)
        raise NotReducible("only a baseline JPEG can be decoded at a reduced size")
    with open_pillow(io.BytesIO(data), name, max_image_pixels()) as image:
        if not isinstance(image, JpegImagePlugin.JpegImageFile):
            raise NotReducible("only a baseline JPEG can be decoded at a reduced size")
        if image.info.get("progressive") or image.info.get("progression"):
            raise NotReducible("a progressive JPEG cannot be decoded at a reduced size within the memory bound")
        width, height = image.size
        reduction = next((s for s in (8, 4, 2) if min(width // s, height // s) >= min_side), 1)
        reduced = -(-width // reduction) * -(-height // reduction)
        if reduction == 1:
            raise NotReducible(f"at half its size a side would be below the model's input of {min_side} px")
        if reduced > limit:
            raise NotReducible(f"even at 1/{reduction} of its size it would be {reduced:,} pixels")
        if image.draft(image.mode, (min_side, min_side)) is None or image.size[0] * image.size[1] > limit:
            raise NotReducible("Pillow cannot decode this JPEG at a reduced size")
        try:
            image.load()
            if image.mode not in ("L", "RGB"):  # CMYK, YCbCr: to RGB, as decoding does
                image = image.convert("RGB")
            pixels = np.asarray(image, dtype=np.float32) / 255.0
        except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad files
            raise DataError(f"{name}: cannot decode the image ({type(err).__name__}: {err})") from None
        return np.ascontiguousarray(pixels), reduction  # Pillow picks the same reduction from (min_side, min_side)


def _first(value) -> str:
    """A DICOM number (the first of several windows) as text: 128, 40.5."""
    try:
        value = value[0] if not isinstance(value, (str, bytes)) and len(value) else value
    except TypeError:
        pass
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def training_reference(config, limit: int = REFERENCE_IMAGES) -> dict | None:
    """Statistics of up to ``limit`` of the run's training images (evenly spaced), or None when its
    training data cannot be read here."""
    from ..data import load_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train = load_dataset(config.data.spec, data_root=config.data.data_root, verify="none",
                                 allow_overlap=True).train
        picks = np.unique(np.linspace(0, len(train.images) - 1, min(limit, len(train.images))).astype(int))
        images = [train.images.load(int(i)) for i in picks]
    except Exception:  # noqa: BLE001 - optional: without training data only size is checked
        return None
    means = np.array([float(image.mean()) for image in images])
    stds = np.array([float(image.std()) for image in images])
    sides = np.array([min(image.shape[:2]) for image in images])
    return {"images": len(images), "mean": [float(means.mean()), float(means.std())],
            "std": [float(stds.mean()), float(stds.std())], "min_side": int(sides.min())}


def input_warnings(image: np.ndarray, reference: dict | None, img_size: int) -> list[str]:
    """Why ``image`` (decoded, [0, 1]) is far from what the run was trained on; [] when it is not."""
    height, width = image.shape[:2]
    found = []
    smallest = min(img_size, reference["min_side"]) if reference else img_size
    if min(height, width) < max(2, smallest // 4):
        found.append(f"the image is {width}x{height} pixels, far smaller than the model's input "
                     f"({img_size}x{img_size}) and the training images (at least {smallest} px a side)")
    if max(height, width) > 4 * min(height, width):
        found.append(f"the image is {width}x{height} pixels: its sides differ more than 4-fold, and the "
                     "centre crop the model sees leaves most of it out")
    mean, std = float(image.mean()), float(image.std())
    if std < 1e-3:
        found.append(f"the image is (nearly) uniform: every pixel is about {mean:.3f}")
    if reference:
        for what, value in (("mean", mean), ("standard deviation", std)):
            centre, spread = reference["mean" if what == "mean" else "std"]
            if abs(value - centre) > FAR * max(spread, MIN_SPREAD):
                found.append(f"its {what} intensity {value:.3f} is far from the training images' "
                             f"({centre:.3f} +- {spread:.3f} over {reference['images']} images)")
    return found
