"""The data layer's errors, in a module of their own so that decoding (``decode.py``) and the
data contract (``base.py``, which decodes on access) both import them without importing each
other."""
from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the file (and line) and what to do about it."""


class ImageTooLarge(DataError):
    """An image whose width x height is above the pixel limit, refused before decoding."""


class UnsupportedImage(DataError):
    """Bytes that are not an image format medpeft decodes (neither Pillow nor DICOM)."""
