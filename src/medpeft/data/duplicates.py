"""The same image twice: within a split and across splits, by path and by content.

:func:`find_duplicates` runs once per :func:`medpeft.data.load_dataset` over the verified splits
(and the fixed training subsets, compared with validation and test only: ``train_1.txt`` is a
part of ``train_list.txt`` by design). What it finds, and what happens:

* one path listed twice with two different labels (in one split or in two): a ``DataError``
  naming the path and both rows, always;
* one path listed twice in one split with the same label: a warning (a duplicate row);
* one image in two splits, by path or by content: a ``DataError`` naming both places (split and
  row or file), unless ``allow_overlap`` (``--allow-overlap``), which makes it a warning that
  counts them (arrays in memory and image files alike: a file copied or re-encoded under a
  second name is an error as the same path listed twice is); a source whose own official files
  hold such content duplicates (``SourceData.expected_duplicates``: MedMNIST) gets the warning
  without the flag, while a path listed in two splits is an error for it too;
* the same content twice in one split: counted (``medpeft data info``), no warning.

Content is a 16-byte blake2b digest. Arrays in memory (MedMNIST, synthetic data): of each
image's uint8 pixels and shape, always; cached per loaded split (and per file, size and mtime
for the source's ``cache_key``), 14 ms for PneumoniaMNIST's 5856 images. Image files: of the
decoded pixels when the split was decoded at load (``verify="decode"``, which ``skip_bad``
implies; :mod:`medpeft.data.verify` hashes while it decodes), else, at ``exists``, of the file
bytes of the files whose byte size equals another listed file's (equal content needs equal
size, so other files are never read): copies of one file are found, a re-encoded image only
with ``--verify decode``. ``none`` compares paths only.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .base import ArrayImages, DataError, FileImages, ImageStore

_DIGEST_CACHE: dict[tuple, list[bytes]] = {}  # ArrayImages.cache_key -> digests, a few loads kept
_CACHE_SIZE = 8
_SHOWN = 5  # places listed in a message


def pixel_digest(array: np.ndarray) -> bytes:
    """blake2b (16 bytes) of an image's pixels, its dtype and shape."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    return digest.digest()


def array_digests(images: ArrayImages) -> list[bytes]:
    """One digest per image, computed once per store (and per ``cache_key`` across loads)."""
    if images.digests is not None:
        return images.digests
    key = images.cache_key
    if key is not None and key in _DIGEST_CACHE:
        images.digests = _DIGEST_CACHE[key]
        return images.digests
    images.digests = [pixel_digest(image) for image in images.array]
    if key is not None:
        if len(_DIGEST_CACHE) >= _CACHE_SIZE:
            _DIGEST_CACHE.pop(next(iter(_DIGEST_CACHE)))
        _DIGEST_CACHE[key] = images.digests
    return images.digests


@dataclass
class Member:
    """One split as the check sees it: ``side`` groups a split with its fixed subsets."""

    name: str  # "train", "val", "test", or a fixed subset's list file
    side: str  # "train" for train and its fixed subsets
    images: ImageStore
    labels: np.ndarray


@dataclass
class Duplicates:
    """What :func:`find_duplicates` counted: extra copies (an image listed k times counts k - 1)."""

    path_within: dict[str, int] = field(default_factory=dict)  # split -> duplicate rows
    pixels_within: dict[str, int] = field(default_factory=dict)  # split -> images repeating one before it
    path_across: dict[str, int] = field(default_factory=dict)  # "train/test" -> images in both
    pixels_across: dict[str, int] = field(default_factory=dict)  # same content, different paths
    content: str = "none"  # how content was compared: "pixels", "file bytes" (of files of equal sizes), "none"
    paths: bool = False  # whether paths were compared (image files; arrays have none)

    def any(self) -> bool:
        return any(v for d in (self.path_within, self.pixels_within, self.path_across, self.pixels_across)
                   for v in d.values())


def find_duplicates(members: list[Member], *, allow_overlap: bool = False, expected: str | None = None,
                    context: str = "") -> Duplicates:
    """Count duplicates of ``members``; raise or warn as the module docstring says."""
    found = Duplicates()
    paths = [_path_keys(m.images) for m in members]
    found.paths = all(keys is not None for keys in paths)
    _paths_within(members, paths, found, context)
    across = _paths_across(members, paths, found, allow_overlap, context)
    digests, found.content = _content_keys(members)
    if digests is not None:
        _pixels(members, digests, paths, across, found, allow_overlap, expected, context)
    return found


def _path_keys(images: ImageStore) -> list[str] | None:
    if not isinstance(images, FileImages):
        return None
    return [os.path.normpath(os.path.abspath(str(p))) for p in images.paths]


def _places(keys: list) -> dict:
    where = defaultdict(list)
    for index, key in enumerate(keys):
        where[key].append(index)
    return where


def _paths_within(members: list[Member], paths, found: Duplicates, context: str) -> None:
    repeated = []
    for member, keys in zip(members, paths):
        if keys is None:
            continue
        extra = 0
        for key, rows in _places(keys).items():
            if len(rows) < 2:
                continue
            first = rows[0]
            for other in rows[1:]:
                if not np.array_equal(member.labels[first], member.labels[other]):
                    raise DataError(f"{key} is listed twice with different labels: "
                                    f"{_label(member, first)} at {_row(member, first)} and "
                                    f"{_label(member, other)} at {_row(member, other)}; correct or remove one row")
                extra += 1
                repeated.append(f"{key} at {_row(member, first)} and {_row(member, other)}")
        if extra and member.side == member.name:
            found.path_within[member.name] = extra
    if repeated:
        warnings.warn(f"{context}: {len(repeated)} duplicate row(s) (the same image and label listed again): "
                      f"{_listing(repeated)}; each copy counts as one more item", stacklevel=3)


def _paths_across(members: list[Member], paths, found: Duplicates, allow_overlap: bool,
                  context: str) -> set[tuple[int, int, int]]:
    """Pairs (member a, member b, row in b) of one path in two splits."""
    seen = set()
    for a in range(len(members)):
        for b in range(a + 1, len(members)):
            ma, mb = members[a], members[b]
            if paths[a] is None or paths[b] is None or ma.side == mb.side:
                continue
            rows_a = _places(paths[a])
            both = [(rows_a[key][0], j) for j, key in enumerate(paths[b]) if key in rows_a]
            for i, j in both:
                if not np.array_equal(ma.labels[i], mb.labels[j]):
                    raise DataError(f"{paths[b][j]} is listed twice with different labels: "
                                    f"{_label(ma, i)} in {ma.name} at {_row(ma, i)} and {_label(mb, j)} "
                                    f"in {mb.name} at {_row(mb, j)}; correct or remove one row")
            if both:
                pair = f"{ma.name}/{mb.name}"
                found.path_across[pair] = len(both)
                places = [f"{paths[b][j]}: {ma.name} at {_row(ma, i)} and {mb.name} at {_row(mb, j)}"
                          for i, j in both]
                _overlap(f"{len(both)} image(s) of {mb.name} are listed in {ma.name} too", places,
                         allow_overlap, None, context)
                seen.update((a, b, j) for _, j in both)
    return seen


def _pixels(members: list[Member], digests, paths, by_path: set, found: Duplicates, allow_overlap: bool,
            expected: str | None, context: str) -> None:
    first_of = {}  # digest -> (member, row) of its first appearance
    for b, (member, keys) in enumerate(zip(members, digests)):
        within, places, conflicts = 0, defaultdict(list), 0
        for j, key in enumerate(keys):
            if key is None:
                continue
            if key not in first_of:
                first_of[key] = (b, j)
                continue
            a, i = first_of[key]
            if a == b:
                within += 1
            elif members[a].side != member.side and (a, b, j) not in by_path and not _same_path(paths, a, i, b, j):
                places[a].append(f"{_item(member, j)} = {_item(members[a], i)}")
                conflicts += not np.array_equal(members[a].labels[i], member.labels[j])
        if within and member.side == member.name:
            found.pixels_within[member.name] = within
        for a, listed in places.items():
            found.pixels_across[f"{members[a].name}/{member.name}"] = len(listed)
            labels = f", {conflicts} of them with another label" if conflicts else ""
            _overlap(f"{len(listed)} image(s) of {member.name} have the same {found.content} as an image of "
                     f"{members[a].name}{labels}", listed, allow_overlap, expected, context)


def _same_path(paths, a: int, i: int, b: int, j: int) -> bool:
    return paths[a] is not None and paths[b] is not None and paths[a][i] == paths[b][j]


def _overlap(what: str, places: list[str], allow_overlap: bool, expected: str | None, context: str) -> None:
    listing = _listing(places)
    if allow_overlap or expected:
        why = "--allow-overlap" if allow_overlap else expected
        warnings.warn(f"{context}: {what} ({why}): {listing}", stacklevel=4)
        return
    raise DataError(f"{context}: {what}, so the score on the later split measures recall of images seen "
                    f"before: {listing}; remove them from one split, or pass --allow-overlap "
                    "(allow_overlap: true) if you mean it")


def _listing(places: list[str]) -> str:
    more = f" and {len(places) - _SHOWN} more" if len(places) > _SHOWN else ""
    return "; ".join(places[:_SHOWN]) + more


def _row(member: Member, index: int) -> str:
    images = member.images
    return images.origins[index] if isinstance(images, FileImages) else images.describe(index)


def _item(member: Member, index: int) -> str:
    """``val[61]`` for an array, ``val <path> (listed at <file:line>)`` for a file."""
    if isinstance(member.images, FileImages):
        return f"{member.name} {member.images.describe(index)}"
    return f"{member.name}[{index}]"


def _label(member: Member, index: int) -> str:
    values = member.labels[index].tolist()
    return f"label {values[0]}" if len(values) == 1 else f"labels {values}"


def _content_keys(members: list[Member]) -> tuple[list[list[bytes | None]] | None, str]:
    """Per member, one digest per image (None: not compared), and what was compared."""
    stores = [m.images for m in members]
    if all(isinstance(s, ArrayImages) for s in stores):
        return [array_digests(s) for s in stores], "pixels"
    if not all(isinstance(s, FileImages) for s in stores):
        return None, "none"
    if all(s.digests is not None for s in stores):
        return [s.digests for s in stores], "pixels"
    if not all(s.checked for s in stores):
        return None, "none"
    return _file_bytes(stores), "file bytes"


def _file_bytes(stores: list[FileImages]) -> list[list[bytes | None]]:
    """Digests of the bytes of files whose size another listed file shares (None for the rest)."""
    sizes = [[_size(p) for p in s.paths] for s in stores]
    counts = defaultdict(set)
    for s, (store, listed) in enumerate(zip(stores, sizes)):
        for path, size in zip(store.paths, listed):
            counts[size].add(os.path.abspath(str(path)))
    digests, cache = [], {}
    for store, listed in zip(stores, sizes):
        keys = []
        for path, size in zip(store.paths, listed):
            if size is None or len(counts[size]) < 2:
                keys.append(None)
                continue
            name = os.path.abspath(str(path))
            if name not in cache:
                cache[name] = _bytes_digest(name)
            keys.append(cache[name])
        digests.append(keys)
    return digests


def _size(path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _bytes_digest(path: str) -> bytes | None:
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.digest()


def members_of(splits: Mapping, fixed: Mapping) -> list[Member]:
    """The splits (train, val, test order) and the fixed training subsets (name -> SplitData)
    as :class:`Member` s; a fixed subset is on the training side."""
    order = [name for name in ("train", "val", "test") if name in splits]
    members = [Member(name, name, splits[name].images, np.asarray(splits[name].labels)) for name in order]
    members += [Member(name, "train", subset.images, np.asarray(subset.labels)) for name, subset in fixed.items()]
    return members
