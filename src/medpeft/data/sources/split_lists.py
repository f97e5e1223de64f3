"""MED-PEFT split lists: ``train_list.txt``, ``val_list.txt``, ``test_list.txt``, 1 %/10 % subsets.

Spec: ``splits:<folder>[?root=<image dir>][&names=a,b,...|&preset=nih|chexpert|rsna]``.

The format is the one of ``DatasetsSplits/`` in RL4M/MED-PEFT (shared with RL4M/MRM-pytorch):
one image a line, ``<relative image path> <l1> <l2> ...`` separated by spaces, 0/1 labels.
``train_1.txt`` and ``train_10.txt`` are the papers' fixed 1 % and 10 % training subsets and
become ``SourceData.fixed_subsets[0.01 / 0.1]``; a folder may lack ``train_list.txt`` (the
public CheXpert lists do), and then only those fractions can be trained.

* Images: ``<root>/<relative path>``, root = ``?root=``, else the data root (``--data-root`` /
  ``$MEDPEFT_DATA``), else the split folder itself. Files are checked by
  :mod:`medpeft.data.verify`, not here.
* Task: one label column -> binary, more -> multilabel.
* Label names: ``?names=`` (two class names for a binary list, one per column otherwise), or
  ``?preset=``, else by column count: 14 -> NIH ChestX-ray14, 5 -> CheXpert's competition
  findings, 1 -> ("negative", "positive"), other -> ``label_0, label_1, ...``. MED-PEFT's code
  names no classes; the ChestX-ray14 order is ``CLASS_NAMES`` of RL4M/MRM-pytorch
  ``NIH_ChestX-ray/train.py`` (same authors, same lists), and the CheXpert order is checked on
  the data: positives per column of ``CheXpert/val_list.txt`` are 80/68/33/45/67, the counts of
  Atelectasis/Cardiomegaly/Consolidation/Edema/Pleural Effusion in CheXpert's validation set.
  Nothing is ever chosen from file or folder names.
* Bad lines (wrong column count against the first line read or the preset, a label other than
  0/1, text that is not UTF-8) are errors naming ``file:line``, or skipped and listed in one
  warning under ``skip_bad``. Parsing is plain string splitting, no pandas: all five NIH
  lists (120k lines) load in about 0.2 s (command in docs/data.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...registry import Registry
from ..base import BadItems, DataError, FileImages
from ..decode import probe_channels
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData

LIST_FILES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
FIXED_SUBSET_FILES = {0.01: "train_1.txt", 0.1: "train_10.txt"}

NIH_CHESTXRAY14 = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
                   "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
                   "Pleural_Thickening", "Hernia")
CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
RSNA_PNEUMONIA = ("normal", "pneumonia")

#: ``?preset=`` -> (label columns, label names); a binary preset names its two classes
PRESETS: Registry[tuple[int, tuple[str, ...]]] = Registry("split-list preset")
PRESETS.add("nih", (14, NIH_CHESTXRAY14))
PRESETS.add("chexpert", (5, CHEXPERT_COMPETITION))
PRESETS.add("rsna", (1, RSNA_PNEUMONIA))

#: label names by column count when neither ``names=`` nor ``preset=`` is given
NAMES_BY_COLUMNS = {14: NIH_CHESTXRAY14, 5: CHEXPERT_COMPETITION, 1: ("negative", "positive")}

_BINARY_VALUES = frozenset(("0", "1"))


class _Columns:
    """The expected number of label columns: from the preset, else from the first line read."""

    def __init__(self, count: int | None = None, source: str = ""):
        self.count = count
        self.source = source

    def problem(self, labels: list[str], where: str) -> str | None:
        if not labels:
            return "no labels after the image path"
        if self.count is None:
            self.count, self.source = len(labels), f"as on {where}"
        if len(labels) != self.count:
            return (f"expected {self.count} label column(s) ({self.source}), "
                    f"found {len(labels)}")
        if not _BINARY_VALUES.issuperset(labels):
            return f"labels must be 0 or 1, found {' '.join(labels)!r}"
        return None


def read_list(path: Path, image_root: Path, columns: _Columns, bad: BadItems) -> SplitData:
    """One list file -> image paths under ``image_root`` and an (N, L) 0/1 label array."""
    prefix, name = os.path.join(str(image_root), ""), str(path)
    paths, origins, rows = [], [], []
    seen_any = False
    for number, line in _numbered_lines(path, bad):
        parts = line.split()  # also drops the trailing spaces and CRs of the real files
        if not parts:
            continue
        seen_any = True
        labels = parts[1:]
        if len(labels) != columns.count or not _BINARY_VALUES.issuperset(labels):
            problem = columns.problem(labels, f"{name}:{number}")  # the slow, explaining path
            if problem is not None:
                bad.report(f"{name}:{number}", problem)
                continue
        relative = parts[0]
        paths.append(relative if os.path.isabs(relative) else prefix + relative)
        origins.append(f"{name}:{number}")
        rows.append("".join(labels))  # each label is one character, "0" or "1"
    if not seen_any:
        raise DataError(f"{path}: the list file is empty; each line should be "
                        "'<relative image path> <label> <label> ...'")
    digits = np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8)
    labels = (digits - ord("0")).astype(np.int64).reshape(len(rows), columns.count or 0)
    return SplitData(FileImages(paths, origins), labels, name)


def _numbered_lines(path: Path, bad: BadItems):
    """(line number, text) pairs; lines that are not UTF-8 are reported as bad."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the list file ({err})") from None
    try:
        yield from enumerate(data.decode("utf-8-sig").splitlines(), start=1)
        return
    except UnicodeDecodeError:
        pass
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            bad.report(f"{path}:{number}", "the line is not UTF-8 text")


@SOURCES.register("splits")
class SplitListSource(DataSource):
    """MED-PEFT's ``DatasetsSplits/<dataset>/`` folders (NIH ChestX-ray14, CheXpert, RSNA)."""

    def read(self) -> SourceData:
        options = take_options(self.spec, {"root": str, "names": str, "preset": str})
        folder = Path(self.spec.target).expanduser()
        if not self.spec.target or not folder.is_dir():
            raise DataError(f"{self.spec.text}: split-list folder {str(folder)!r} not found; "
                            "use splits:<folder with train_list.txt, val_list.txt, test_list.txt>")
        image_root = self._image_root(options.get("root"), folder)
        columns, preset_names = self._expected_columns(options)

        bad = BadItems(self.skip_bad)
        splits = {split: read_list(folder / file, image_root, columns, bad)
                  for split, file in LIST_FILES.items() if (folder / file).is_file()}
        fixed = {fraction: read_list(folder / file, image_root, columns, bad)
                 for fraction, file in FIXED_SUBSET_FILES.items() if (folder / file).is_file()}
        if not splits and not fixed:
            wanted = ", ".join([*LIST_FILES.values(), *FIXED_SUBSET_FILES.values()])
            raise DataError(f"{folder}: no split lists found (looked for {wanted})")
        bad.warn(self.spec.text)

        width = columns.count or 0
        task = "binary" if width == 1 else "multilabel"
        names = preset_names or self._names(options.get("names"), width, task, columns.source)
        first = next(iter([*splits.values(), *fixed.values()]))
        return SourceData(name=f"splits:{folder.name}", task=task, label_names=names,
                          channels=probe_channels(first.images.paths), splits=splits,
                          fixed_subsets=fixed, skipped=list(bad.items),
                          expected_files={split: str(folder / file) for split, file in LIST_FILES.items()})

    def _image_root(self, explicit: str | None, folder: Path) -> Path:
        for candidate, what in ((explicit, "?root="), (self.data_root, "the data root")):
            if candidate:
                root = Path(candidate).expanduser()
                if not root.is_dir():
                    raise DataError(f"{self.spec.text}: image folder {root} ({what}) not found")
                return root
        return folder

    def _expected_columns(self, options: dict) -> tuple[_Columns, tuple[str, ...] | None]:
        preset = options.get("preset")
        if preset is None:
            return _Columns(), None
        if options.get("names") is not None:
            raise ValueError(f"{self.spec.text}: give names= or preset=, not both")
        try:
            count, names = PRESETS.get(preset.lower())
        except KeyError as err:
            raise ValueError(f"{self.spec.text}: {err}") from None
        return _Columns(count, f"as the {preset} preset has"), names

    def _names(self, given: str | None, width: int, task: str, reference: str) -> tuple[str, ...]:
        if given is not None:
            names = tuple(name.strip() for name in given.split(","))
            wanted = 2 if task == "binary" else width
            if len(names) != wanted or not all(names):
                what = "its two classes (negative first)" if task == "binary" else "each column"
                raise DataError(f"{self.spec.text}: names= must name {what}: {wanted} names for "
                                f"{width} label column(s) ({reference}), got {list(names)}")
            return names
        if width in NAMES_BY_COLUMNS:
            return NAMES_BY_COLUMNS[width]
        return tuple(f"label_{i}" for i in range(width))
