"""Checks that every image a split lists can be used, before any training starts.

A missing file or an undecodable image is reported with the list file and line that named
it. Without ``skip_bad`` the first problem is one clear error; with it, bad items are left
out of the split and listed in a warning (see :class:`medpeft.data.base.BadItems`).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from .base import BadItems, DataError, FileImages
from .sources.base import SplitData

Verify = Literal["none", "exists", "decode"]
VERIFY_LEVELS = ("none", "exists", "decode")


def _problem(images: FileImages, index: int, level: Verify) -> str | None:
    path = images.paths[index]
    if not os.path.isfile(path):
        return "image file not found"
    if level == "decode":
        try:
            images.load(index)
        except DataError as err:
            return str(err).split(" (listed at ")[0]
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
        problems = list(pool.map(lambda i: _problem(images, i, level), range(len(images))))
    keep = []
    for index, problem in enumerate(problems):
        if problem is None:
            keep.append(index)
        else:
            bad.report(images.describe(index), problem)
    if len(keep) == len(images):
        return split
    keep = np.asarray(keep, dtype=np.int64)
    return SplitData(images.subset(keep), np.asarray(split.labels)[keep], split.origin)
