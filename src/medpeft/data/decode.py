"""Reading one image file into a float32 array in [0, 1]: PNG/JPEG/anything Pillow opens, and DICOM.

``read_image(path)`` returns shape ``(H, W)`` for grayscale and ``(H, W, 3)`` for colour, so every
source hands the same kind of array to :mod:`medpeft.data.transforms`.

Pillow images are scaled by their bit depth (8-bit by 255, 16-bit ``I;16`` by 65535); palette
images become RGB, alpha channels are dropped, CMYK/YCbCr/LAB are converted to RGB.

DICOM files are decoded with pydicom's own pixel functions, in the order of the DICOM display
pipeline (PS3.4 N.2): stored values (pydicom masks the bits above *BitsStored*) -> modality LUT
or rescale slope/intercept -> VOI LUT or window centre/width when the file has one -> scaled to
[0, 1] by the VOI output range (so a window clips), or by the image's own min-max when there is
no VOI transform -> MONOCHROME1 inverted so that high values are always bright. RGB/YBR colour
DICOMs are returned as RGB scaled by *BitsStored*; PALETTE COLOR through its colour LUT.
Multi-frame DICOMs: only the FIRST frame is decoded and returned (classification works on 2D
images; pick frames upstream if another one matters).

Image size limit (decompression bombs): a small file can declare a huge image (a 6 MB RLE DICOM of
20000x20000 pixels needs 7.5 GB to decode). Every image is refused *before* its pixels are
decoded when width x height exceeds :func:`max_image_pixels` -- one limit for all formats, which
is Pillow's own ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default). Pillow images are
checked on the size Pillow reads from the header; DICOMs on *Rows* x *Columns* of the decoded
(first) frame, read from the header before the pixel data is touched. Samples per pixel are not
multiplied in, as Pillow does not count channels, and neither are frames, since only the first
is decoded. Change the limit in one place: ``$MEDPEFT_MAX_IMAGE_PIXELS`` (a number, or ``none``)
or :func:`set_max_image_pixels`; both set Pillow's value, so Pillow's own check agrees.

Every failure raises :class:`medpeft.data.base.DataError` naming the path and the problem
(:class:`~medpeft.data.base.ImageTooLarge` above the limit, :class:`~medpeft.data.base.UnsupportedImage`
for bytes in no format Pillow or pydicom reads). :func:`decode_image` decodes bytes held in memory
(an HTTP upload) the same way, without writing them anywhere; :func:`open_pillow` reads only a
Pillow image's header (its size before decoding).
Decoding is done by third-party libraries that raise many exception types for bad files (OSError,
ValueError, SyntaxError, struct.error, AttributeError, ...), so decoding calls are wrapped broadly
and the original error is quoted in the message.
"""
from __future__ import annotations

import io
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from .errors import DataError, ImageTooLarge, UnsupportedImage

DICOM_SUFFIXES = (".dcm", ".dicom")
_PREAMBLE = 128  # bytes before the b"DICM" magic of a DICOM Part 10 file
MAX_PIXELS_ENV = "MEDPEFT_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int | None:
    """Pixels (width x height) above which an image is refused before decoding; None: no limit.

    Pillow's ``Image.MAX_IMAGE_PIXELS``, after applying ``$MEDPEFT_MAX_IMAGE_PIXELS`` when it is
    set (read on every call, so it also reaches data-loader worker processes).
    """
    from PIL import Image

    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if raw:
        set_max_image_pixels(_parse_limit(raw))
    return Image.MAX_IMAGE_PIXELS


def set_max_image_pixels(limit: int | None) -> None:
    """Set the one image size limit (Pillow's ``Image.MAX_IMAGE_PIXELS``); None removes it."""
    from PIL import Image

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"the image size limit must be a positive whole number of pixels or "
                         f"None, got {limit!r}")
    Image.MAX_IMAGE_PIXELS = limit


def _parse_limit(raw: str) -> int | None:
    if raw.lower() in ("none", "0"):
        return None
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${MAX_PIXELS_ENV} must be a whole number of pixels (e.g. 200000000) "
                         f"or 'none' for no limit, got {raw!r}")
    return value


def _too_large(path, pixels: int, limit: int, shape: tuple[int, int] | None = None) -> ImageTooLarge:
    """The one message for an image over the limit, whatever its format."""
    size = f"{shape[0]}x{shape[1]} = {pixels:,}" if shape else f"{pixels:,}"
    return ImageTooLarge(f"{path}: the image is {size} pixels, above the limit of {limit:,} pixels per "
                     "image, so it was not decoded (a decompression bomb, or a genuinely huge "
                     f"image?); if the file is genuine, raise the limit with ${MAX_PIXELS_ENV}="
                     "<pixels> or medpeft.data.decode.set_max_image_pixels()")


def _check_size(path, width: int, height: int, limit: int | None) -> None:
    if limit is not None and width * height > limit:
        raise _too_large(path, width * height, limit, (width, height))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """float32 image in [0, 1], shape (H, W) or (H, W, 3); DataError naming ``path`` on failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    has_magic = _has_dicom_magic(path)
    if has_magic or path.suffix.lower() in DICOM_SUFFIXES:
        image = _read_dicom(path, path, force=not has_magic)
    else:
        image = _read_pillow(path, path)
    return np.ascontiguousarray(image, dtype=np.float32)


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """:func:`read_image` for bytes in memory (an upload): same formats, limit and errors, with
    ``name`` in the messages; a ``.dcm``/``.dicom`` name or the DICM magic selects DICOM. Bytes
    in no format Pillow or pydicom reads raise :class:`UnsupportedImage`."""
    if not data:
        raise UnsupportedImage(f"{name}: the file is empty")
    has_magic = data[_PREAMBLE:_PREAMBLE + 4] == b"DICM"
    if has_magic or Path(name).suffix.lower() in DICOM_SUFFIXES:
        image = _read_dicom(io.BytesIO(data), name, force=not has_magic)
    else:
        image = _read_pillow(io.BytesIO(data), name)
    return np.ascontiguousarray(image, dtype=np.float32)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PREAMBLE + 4)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({err})") from None
    return head[_PREAMBLE:] == b"DICM"


# ----------------------------------------------------------------------------- Pillow
# mode -> what to convert to before reading the pixels (None: read as is)
_PIL_CONVERT = {"1": "L", "L": None, "LA": "L", "La": "L", "P": "RGB", "PA": "RGB",
                "RGB": None, "RGBA": "RGB", "RGBa": "RGB", "RGBX": "RGB", "CMYK": "RGB",
                "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
_PIL_16BIT = ("I;16", "I;16B", "I;16L", "I;16N")


# warnings.catch_warnings swaps process-wide state (not thread-safe before Python 3.14), and
# verify.py opens images from several threads: one lock around the header read keeps it sound.
_PILLOW_OPEN = threading.Lock()


def _read_pillow(source, path) -> np.ndarray:
    """Decode ``source`` (a path or a binary file object) with Pillow; ``path`` names it in errors."""
    try:
        with open_pillow(source, path, max_image_pixels()) as image:
            image.load()  # decodes now, so truncated files fail here and not in a worker
            return _pillow_to_array(image, path)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad files
        raise DataError(f"{path}: cannot decode the image ({type(err).__name__}: {err})") from None


def open_pillow(source, path, limit: int | None):
    """Open ``source`` (a path or a binary file object) with Pillow, reading only its header.

    Returns Pillow's lazy image (use it as a context manager): its size, mode and format are
    known, its pixels are decoded on ``load()``, so a caller can check the size or prepare a
    reduced decode first (``medpeft serve`` uses Pillow's JPEG ``draft`` mode). ``path`` names
    the file in errors. Refused before any pixel is decoded: bytes in no format Pillow reads
    (:class:`UnsupportedImage`) and an image whose width x height is above ``limit`` (None: no
    limit here), with the same :class:`ImageTooLarge` as a DICOM over the limit. Pillow itself
    refuses an image above twice its ``MAX_IMAGE_PIXELS`` (:func:`max_image_pixels`): that too is
    an ``ImageTooLarge`` when ``limit`` is given, else a :class:`DataError`.
    """
    from PIL import Image, UnidentifiedImageError

    with _PILLOW_OPEN, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below instead
        try:
            image = Image.open(source)
        except UnidentifiedImageError:
            raise UnsupportedImage(f"{path}: cannot decode the image: not in a format medpeft reads "
                                   "(PNG, JPEG, DICOM or another format Pillow opens)") from None
        except Image.DecompressionBombError as err:
            pixels = re.search(r"\((\d+) pixels\)", str(err))
            if pixels is None or limit is None:
                raise DataError(f"{path}: {err}") from None
            raise _too_large(path, int(pixels[1]), limit) from None
    try:
        _check_size(path, *image.size, limit)
    except DataError:
        image.close()
        raise
    return image


def _pillow_to_array(image, path) -> np.ndarray:
    mode = image.mode
    if mode in _PIL_16BIT:
        return np.asarray(image).astype(np.float32) / 65535.0
    if mode == "I":  # 32-bit integer mode; Pillow also uses it for some 16-bit files
        array = np.asarray(image).astype(np.float64)
        if array.size and array.min() >= 0 and array.max() <= 65535:
            return array / 65535.0
        return _min_max(array)
    if mode == "F":  # 32-bit float (TIFF): already [0, 1] or scaled by its own range
        array = np.asarray(image, dtype=np.float64)
        if array.size and array.min() >= 0.0 and array.max() <= 1.0:
            return array
        return _min_max(array)
    if mode not in _PIL_CONVERT:
        raise DataError(f"{path}: unsupported image mode {mode!r} "
                        f"(supported: {', '.join([*_PIL_CONVERT, *_PIL_16BIT, 'I', 'F'])})")
    target = _PIL_CONVERT[mode]
    if target is not None:
        image = image.convert(target)
    return np.asarray(image).astype(np.float32) / 255.0


def _min_max(array: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the array's own range; a constant image becomes all zeros."""
    array = array.astype(np.float64)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array)
    return (array - low) / (high - low)


# ----------------------------------------------------------------------------- DICOM
def _read_dicom(source, path, force: bool) -> np.ndarray:
    """Decode ``source`` (a path or a binary file object) as DICOM; ``path`` names it in errors."""
    import pydicom

    try:
        ds = pydicom.dcmread(source, force=force)
    except Exception as err:  # noqa: BLE001 - pydicom raises many types for bad files
        raise DataError(f"{path}: not a readable DICOM file "
                        f"({type(err).__name__}: {err})") from None
    if not any(key in ds for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(f"{path}: the DICOM file has no pixel data (is it a report or "
                        "structured document rather than an image?)")
    _check_dicom_size(ds, path)
    try:
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            ds.pixel_array_options(index=0)  # decode only the first frame
        stored = ds.pixel_array
        return _dicom_to_unit(stored, ds)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001
        raise DataError(f"{path}: cannot decode the DICOM pixel data "
                        f"({type(err).__name__}: {err})") from None


def _check_dicom_size(ds, path) -> None:
    """Refuse a frame over the limit from the header alone, before any pixel data is decoded."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"{path}: the DICOM header has no valid Rows/Columns, so the image size "
                        "is unknown") from None
    _check_size(path, columns, rows, max_image_pixels())


def _dicom_to_unit(stored: np.ndarray, ds) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(stored, ds)  # (H, W, 3) with the LUT's own bit depth
        return rgb / float(np.iinfo(rgb.dtype).max)
    if int(ds.get("SamplesPerPixel", 1)) > 1:  # RGB (pydicom converts YBR to RGB)
        bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
        return np.clip(stored / float(2**bits - 1), 0.0, 1.0)
    values = apply_modality_lut(stored, ds)
    voi_range = _voi_output_range(ds)
    if voi_range is None:
        unit = _min_max(values)
    else:
        low, high = voi_range
        if ds.get("VOILUTSequence") and np.issubdtype(values.dtype, np.floating):
            values = np.rint(values).astype(np.int64)  # a LUT is indexed by integers
        unit = np.clip((apply_voi_lut(values, ds) - low) / (high - low), 0.0, 1.0)
    return 1.0 - unit if photometric == "MONOCHROME1" else unit


def _voi_output_range(ds) -> tuple[float, float] | None:
    """The output range of the VOI transform pydicom's ``apply_voi_lut`` will apply, or None.

    A VOI LUT's entries span [0, 2**bits - 1] (PS3.3 C.11.2.1.1; its descriptor gives the bits).
    For a window, the output range is what ``apply_windowing`` maps values far below and far
    above the window to (PS3.3 C.11.2.1.2), so we ask pydicom rather than recompute it.
    """
    from pydicom.pixels import apply_windowing

    lut_items = ds.get("VOILUTSequence")
    if lut_items and "LUTDescriptor" in lut_items[0] and "LUTData" in lut_items[0]:
        bits = int(lut_items[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    with np.errstate(over="ignore"):  # the SIGMOID function saturates on the probe values
        low, high = apply_windowing(np.array([-1e30, 1e30]), ds)
    if not high > low:
        return None
    return float(low), float(high)


def probe_channels(paths, default: int = 1, tries: int = 3) -> int:
    """Channels (1 or 3) of the first readable image among the first ``tries`` paths.

    For the dataset summary only: sources that list files do not decode them all up front, and
    a missing or broken file is reported later by :mod:`medpeft.data.verify`, so it is passed
    over here and ``default`` is returned when nothing can be read.
    """
    for path in list(paths[:tries]):
        try:
            image = read_image(path)
        except DataError:
            continue
        return 1 if image.ndim == 2 else image.shape[2]
    return default
