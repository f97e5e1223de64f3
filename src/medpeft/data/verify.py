"""Checks that every image a split lists can be used, before any training starts.

A missing file or an undecodable image is reported with the list file and line that named
it. Without ``skip_bad`` the first problem is one clear error; with it, bad items are left
out of the split and listed in a warning (see :class:`medpeft.data.base.BadItems`).

Levels: ``exists`` stats every file (cheap), ``decode`` decodes every image once (finds
corrupt files and images over the size limit, at the cost of one full read of the data set),
``none`` checks nothing. ``skip_bad`` raises ``exists`` (the default) to ``decode``: a corrupt
file is only found by decoding it, and an item that is to be left out has to be found before
training starts (:func:`effective_level`). An explicit ``none`` stays ``none``.
"""
from __future__ import annotations

import os
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from .base import BadItems, DataError, FileImages
from .sources.base import SplitData

Verify = Literal["none", "exists", "decode"]
VERIFY_LEVELS = ("none", "exists", "decode")


def effective_level(level: Verify, skip_bad: bool) -> Verify:
    """The check actually run: ``exists`` becomes ``decode`` when ``skip_bad`` is on."""
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {level!r}")
    return "decode" if skip_bad and level == "exists" else level


def _problem(path: str, level: Verify) -> str | None:
    from .decode import read_image  # decoding libraries load only when files are read

    if not os.path.isfile(path):
        return "image file not found"
    if level == "decode":
        try:
            read_image(path)
        except DataError as err:
            return str(err).removeprefix(f"{Path(path)}: ")  # describe() names the path
    return None


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
    for index, problem in enumerate(problems):
        if problem is None:
            keep.append(index)
        else:
            bad.report(images.describe(index), problem)
    keep = np.asarray(keep, dtype=np.int64)
    kept = images.subset(keep)
    kept.decoded = level == "decode"
    return split.subset(keep, kept)
