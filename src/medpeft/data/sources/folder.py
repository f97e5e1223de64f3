"""Image folders with one sub-folder per class (the torchvision ``ImageFolder`` layout).

Spec: ``folder:<dir>[?val=0.1&test=0.2&seed=0]``.

    <dir>/<class>/<image>                       -> seeded stratified train/val/test split
    <dir>/{train,val,test}/<class>/<image>      -> the given split, options not allowed

Classes are the sub-folder names, sorted; the task is binary for exactly two classes (the
second sorted name is the positive class) and multiclass otherwise. Image files are found
recursively inside each class folder by extension (png, jpg, jpeg, bmp, tif, tiff, dcm, any
case); other files and hidden folders are ignored. With split folders, a class may be absent
from val/ or test/, but a class folder there that train/ lacks is an error.

The automatic split (:func:`stratified_split`, shared with the ``csv:`` source) gives ``test``
and ``val`` the requested fractions of every class: each class's items are shuffled with the
seed and spread evenly over [0, 1), the same systematic ordering :mod:`medpeft.data.fractions`
uses, so the same files and seed always give the same split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import DataError, FileImages
from ..decode import probe_channels
from ..spec import take_options
from . import SOURCES
from .base import DataSource, SourceData, SplitData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
SPLIT_FOLDERS = ("train", "val", "test")
SPLIT_OPTIONS = {"val": float, "test": float, "seed": int}
SPLIT_DEFAULTS = {"val": 0.1, "test": 0.2, "seed": 0}


def stratified_split(strata: np.ndarray, val: float, test: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of train/val/test, each holding its fraction of every stratum.

    ``strata`` is one integer per item (the class, or another grouping). Within a stratum of
    n items, the j-th of the seeded-shuffled items gets the key (j + u) / n with u uniform in
    [0, 1); sorting all items by key and cutting ``test`` then ``val`` off the front keeps
    every stratum's share within one item of the requested fraction.
    """
    check_split_fractions(val, test)
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    keys = np.empty(len(strata), dtype=np.float64)
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
    order = np.lexsort((rng.random(len(keys)), keys))  # ties broken at random
    n_test = max(1, round(test * len(order)))
    n_val = max(1, round(val * len(order)))
    if n_test + n_val >= len(order):
        raise DataError(f"{len(order)} items are too few for val={val} and test={test}: "
                        "no training items would be left")
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {name: np.sort(part) for name, part in parts.items()}


def check_split_fractions(val: float, test: float) -> None:
    if not (0.0 < val < 1.0 and 0.0 < test < 1.0 and val + test < 1.0):
        raise ValueError(f"val and test must be fractions in (0, 1) with val + test < 1, "
                         f"got val={val}, test={test}")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder``, sorted, hidden files and folders left out."""
    found = [p for p in folder.rglob("*") if is_image_file(p)
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found)


@SOURCES.register("folder")
class FolderSource(DataSource):
    """A class-per-folder image tree, with or without train/val/test folders."""

    def read(self) -> SourceData:
        root = Path(self.spec.target).expanduser()
        if not self.spec.target or not root.is_dir():
            raise DataError(f"{self.spec.text}: folder {str(root)!r} not found; use "
                            "folder:<dir with one sub-folder of images per class>")
        present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
        if present:
            splits, classes = self._given_splits(root, present)
        else:
            splits, classes = self._automatic_splits(root)
        task = "binary" if len(classes) == 2 else "multiclass"
        return SourceData(name=f"folder:{root.name}", task=task, label_names=tuple(classes),
                          channels=probe_channels(splits["train"].images.paths), splits=splits)

    def _given_splits(self, root: Path, present: list[str]):
        if self.spec.options:
            raise ValueError(f"{self.spec.text}: {root} has its own train/val/test folders, so "
                             f"the split options {sorted(self.spec.options)} do not apply")
        missing = [name for name in SPLIT_FOLDERS if name not in present]
        if missing:
            raise DataError(f"{root}: has {', '.join(present)}/ but not {', '.join(missing)}/; "
                            "give all three split folders, or none for an automatic split")
        classes = self._classes(root / "train")
        splits = {}
        for name in SPLIT_FOLDERS:
            unknown = [p.name for p in visible_subfolders(root / name) if p.name not in classes]
            if unknown:
                raise DataError(f"{root / name}: class folder(s) {unknown} do not exist in "
                                f"{root / 'train'} (classes: {classes})")
            paths, labels, origins = self._scan(root / name, classes, require_all=name == "train")
            splits[name] = SplitData(FileImages(paths, origins), labels, str(root / name))
        return splits, classes

    def _automatic_splits(self, root: Path):
        options = take_options(self.spec, SPLIT_OPTIONS, SPLIT_DEFAULTS)
        classes = self._classes(root)
        paths, labels, origins = self._scan(root, classes, require_all=True)
        parts = stratified_split(labels[:, 0], options["val"], options["test"], options["seed"])
        images = FileImages(paths, origins)
        note = f"{root} (val={options['val']}, test={options['test']}, seed={options['seed']})"
        return {name: SplitData(images.subset(index), labels[index], f"{name} of {note}")
                for name, index in parts.items()}, classes

    @staticmethod
    def _classes(folder: Path) -> list[str]:
        classes = [p.name for p in visible_subfolders(folder)]
        if len(classes) < 2:
            stray = [p.name for p in folder.iterdir() if is_image_file(p)][:3]
            hint = f" (found image files {stray} directly in it)" if stray else ""
            raise DataError(f"{folder}: expected one sub-folder per class, at least two, found "
                            f"{classes or 'none'}{hint}")
        return classes

    @staticmethod
    def _scan(folder: Path, classes: list[str], require_all: bool):
        paths, labels, origins = [], [], []
        for index, name in enumerate(classes):
            class_folder = folder / name
            files = image_files(class_folder) if class_folder.is_dir() else []
            if require_all and not files:
                raise DataError(f"{class_folder}: no image files (looked for "
                                f"{', '.join(IMAGE_EXTENSIONS)}); remove the folder or add images")
            paths += [str(f) for f in files]
            labels += [index] * len(files)
            origins += [f"class folder {class_folder}"] * len(files)
        return paths, np.asarray(labels, dtype=np.int64).reshape(-1, 1), origins
