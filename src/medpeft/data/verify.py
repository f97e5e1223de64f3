"""Checks that every image a split lists can be used, before any training starts.

A missing file or an undecodable image is reported with the list file and line that named
it. Without ``skip_bad`` the first problem is one clear error; with it, bad items are left
out of the split and listed in a warning (see :class:`medpeft.data.base.BadItems`).

Levels: ``exists`` stats every file (cheap), ``decode`` decodes every image once (finds
corrupt files and images over the size limit, at the cost of one full read of the data set),
``none`` checks nothing. ``skip_bad`` raises ``exists`` (the default) to ``decode``: a corrupt
file is only found by decoding it, and an item that is to be left out has to be found before
training starts (:func:`effective_level`). An explicit ``none`` stays ``none``.
Decoding also records each image's pixel digest, for the duplicate check of
:mod:`medpeft.data.duplicates`.
"""
from __future__ import annotations

import os
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from .base import BadItems, DataError, FileImages
from .duplicates import pixel_digest
from .sources.base import SplitData

Verify = Literal["none", "exists", "decode"]
VERIFY_LEVELS = ("none", "exists", "decode")


def effective_level(level: Verify, skip_bad: bool) -> Verify:
    """The check actually run: ``exists`` becomes ``decode`` when ``skip_bad`` is on."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {level!r}")
    return "decode" if skip_bad and level == "exists" else level


def _problem(path: str, level: Verify) -> tuple[str | None, bytes | None]:
    """(what is wrong with the file or None, its pixel digest when decoded)."""
    from .decode import read_image  # decoding libraries load only when files are read

    if not os.path.isfile(path):
        return "image file not found", None
    if level == "decode":
        try:
            return None, pixel_digest(read_image(path))
        except DataError as err:
            return str(err).removeprefix(f"{Path(path)}: "), None  # describe() names the path
    return None, None


def verify_split(split: SplitData, level: Verify, bad: BadItems) -> SplitData:
    """The split with unusable images removed (skip_bad) or a DataError at the first one."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {level!r}")
    if level == "none" or not isinstance(split.images, FileImages):
        return split
    images = split.images
    workers = min(8, (os.cpu_count() or 1) * 2) if level == "decode" else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(lambda path: _problem(path, level), images.paths))
    keep = []
    for index, (problem, _) in enumerate(problems):
        if problem is None:
            keep.append(index)
        else:
            bad.report(images.describe(index), problem)
    keep = np.asarray(keep, dtype=np.int64)
    kept = images.subset(keep)
    kept.decoded, kept.checked = level == "decode", True
    if level == "decode":  # hashed while decoding: the content check of data/duplicates.py is free
        kept.digests = [problems[i][1] for i in keep]
    return split.subset(keep, kept)
