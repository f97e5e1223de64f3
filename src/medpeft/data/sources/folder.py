r"""Image folders with one sub-folder per class (the torchvision ``ImageFolder`` layout).

Spec: ``folder:<dir>[?val=0.1&test=0.2&seed=0&group_regex=<regex>&exclude=<glob>&preset=<name>]``.

    <dir>/<class>/<image>                       -> seeded stratified train/val/test split
    <dir>/{train,val,test}/<class>/<image>      -> the given split, split options not allowed

Classes are the sub-folder names, sorted; the task is binary for exactly two classes (the
second sorted name is the positive class) and multiclass otherwise. Image files are found
recursively inside each class folder by extension (png, jpg, jpeg, bmp, tif, tiff, dcm, any
case); other files and hidden folders are ignored. With split folders, a class may be absent
from val/ or test/, but a class folder there that train/ lacks is an error.

The automatic split (:func:`stratified_split`, shared with the ``csv:`` source) gives ``test``
and ``val`` the requested fractions of every class: each class's items are shuffled with the
seed and spread evenly over [0, 1), the same systematic ordering :mod:`medpeft.data.fractions`
uses, so the same files and seed always give the same split.

``group_regex=<regex>`` groups images by patient for the automatic split: the regex is searched
in each image's path relative to its class folder (``/``-separated, e.g. ``p007/scan2.png`` or
``00012_003.png``), and its first capture group (or its whole match, without groups) is the
group: ``group_regex=^(\d+)_`` groups NIH-style ``<patient>_<index>.png`` names,
``group_regex=^([^/]+)/`` one sub-folder per patient. A group may span classes. Images whose
path does not match are errors (skipped under ``skip_bad``). The split is then made over groups
(:mod:`medpeft.data.sources.group_split`), so no patient is in two splits.

``exclude=<glob>[,<glob>...]`` leaves out image files whose name matches a glob (case-sensitive,
e.g. ``*_mask*.png`` for segmentation masks stored beside the images); how many were left out
is listed in the dataset notes. ``preset=breastus`` sets it for BUSI
(:mod:`medpeft.data.sources.dataset_presets`); options in the spec win over a preset's.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from ..base import BadItems, DataError, FileImages
from ..decode import probe_channels
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData
from .dataset_presets import FOLDER_PRESETS
from .group_split import check_split_fractions, compile_group_regex, group_of, group_split

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")
SPLIT_FOLDERS = ("train", "val", "test")
SPLIT_OPTIONS = {"val": float, "test": float, "seed": int}
SPLIT_DEFAULTS = {"val": 0.1, "test": 0.2, "seed": 0}
#: options of an automatic split (they do not apply to given train/val/test folders)
AUTOMATIC_OPTIONS = {**SPLIT_OPTIONS, "group_regex": str}
FOLDER_OPTIONS = {**AUTOMATIC_OPTIONS, "exclude": str, "preset": str}


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


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def visible_subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder``, sorted, hidden files and folders left out."""
    found = [p for p in folder.rglob("*") if is_image_file(p)
             and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(found)


class _Exclude:
    """``exclude=``: image files whose name matches one of the globs are left out, and counted."""

    def __init__(self, given: str):
        self.globs = [glob.strip() for glob in given.split(",") if glob.strip()]
        self.count = 0

    def keep(self, files: list[Path]) -> list[Path]:
        kept = [f for f in files if not any(fnmatchcase(f.name, glob) for glob in self.globs)]
        self.count += len(files) - len(kept)
        return kept

    def notes(self) -> list[str]:
        if not self.count:
            return []
        return [f"excluded {self.count} file(s) matching {', '.join(self.globs)} (exclude=)"]


@SOURCES.register("folder")
class FolderSource(DataSource):
    """A class-per-folder image tree, with or without train/val/test folders."""

    def read(self) -> SourceData:
        root = Path(self.spec.target).expanduser()
        if not self.spec.target or not root.is_dir():
            raise DataError(f"{self.spec.text}: folder {str(root)!r} not found; use "
                            "folder:<dir with one sub-folder of images per class>")
        options = self._options()
        self.exclude = _Exclude(options.get("exclude", ""))
        present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
        bad = BadItems(self.skip_bad)
        if present:
            splits, classes = self._given_splits(root, present, options)
        else:
            splits, classes = self._automatic_splits(root, options, bad)
        bad.warn(self.spec.text)
        task = "binary" if len(classes) == 2 else "multiclass"
        return SourceData(name=f"folder:{root.name}", task=task, label_names=tuple(classes),
                          channels=probe_channels(splits["train"].images.paths), splits=splits,
                          skipped=list(bad.items), notes=self.exclude.notes())

    def _options(self) -> dict:
        """The spec's options over the preset's (if any)."""
        options = take_options(self.spec, FOLDER_OPTIONS)
        if "preset" not in options:
            return options
        try:
            preset = FOLDER_PRESETS.get(options["preset"].lower())
        except KeyError as err:
            raise ValueError(f"{self.spec.text}: {err}") from None
        return {**preset, **options}

    def _given_splits(self, root: Path, present: list[str], options: dict):
        automatic = sorted(key for key in options if key in AUTOMATIC_OPTIONS)
        if automatic:
            raise ValueError(f"{self.spec.text}: {root} has its own train/val/test folders, so "
                             f"the split options {automatic} do not apply")
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

    def _automatic_splits(self, root: Path, options: dict, bad: BadItems):
        classes = self._classes(root)
        paths, labels, origins = self._scan(root, classes, require_all=True)
        settings = {key: options.get(key, default) for key, default in SPLIT_DEFAULTS.items()}
        note = ", ".join(f"{key}={value}" for key, value in settings.items())
        if "group_regex" in options:
            groups, keep = self._groups(root, classes, paths, labels, origins,
                                        options["group_regex"], bad)
            paths, origins, labels = [paths[i] for i in keep], [origins[i] for i in keep], labels[keep]
            parts = group_split(labels[:, 0], groups, **settings)
            note += f", group_regex={options['group_regex']}"
        else:
            parts = stratified_split(labels[:, 0], **settings)
        images = FileImages(paths, origins)
        return {name: SplitData(images.subset(index), labels[index], f"{name} of {root} ({note})")
                for name, index in parts.items()}, classes

    def _groups(self, root: Path, classes: list[str], paths: list[str], labels: np.ndarray,
                origins: list[str], pattern: str, bad: BadItems) -> tuple[np.ndarray, list[int]]:
        """Each image's group (regex over its path in its class folder) and the items that have one."""
        regex = compile_group_regex(pattern, self.spec.text)
        groups, keep = [], []
        for index, (path, label) in enumerate(zip(paths, labels[:, 0])):
            group = group_of(regex, Path(path).relative_to(root / classes[label]).as_posix())
            if group is None:
                bad.report(f"{path} ({origins[index]})",
                           f"the path does not match group_regex={pattern}, so it has no group")
                continue
            groups.append(group)
            keep.append(index)
        return np.array(groups), keep

    @staticmethod
    def _classes(folder: Path) -> list[str]:
        classes = [p.name for p in visible_subfolders(folder)]
        if len(classes) < 2:
            stray = [p.name for p in folder.iterdir() if is_image_file(p)][:3]
            hint = f" (found image files {stray} directly in it)" if stray else ""
            raise DataError(f"{folder}: expected one sub-folder per class, at least two, found "
                            f"{classes or 'none'}{hint}")
        return classes

    def _scan(self, folder: Path, classes: list[str], require_all: bool):
        paths, labels, origins = [], [], []
        for index, name in enumerate(classes):
            class_folder = folder / name
            files = self.exclude.keep(image_files(class_folder)) if class_folder.is_dir() else []
            if require_all and not files:
                left_out = f", leaving out {', '.join(self.exclude.globs)}" if self.exclude.globs else ""
                raise DataError(f"{class_folder}: no image files (looked for "
                                f"{', '.join(IMAGE_EXTENSIONS)}{left_out}); remove the folder or "
                                "add images")
            paths += [str(f) for f in files]
            labels += [index] * len(files)
            origins += [f"class folder {class_folder}"] * len(files)
        return paths, np.asarray(labels, dtype=np.int64).reshape(-1, 1), origins
