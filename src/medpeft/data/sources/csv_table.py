"""A CSV table of image paths and labels (HAM10000's metadata, Kaggle-style label files, ...).

Spec: ``csv:<file>?<options>``, for example
``csv:/data/HAM10000_metadata.csv?path=image_id&label=dx&ext=.jpg&root=/data/images``, or
``csv:<dataset folder>?preset=<name>`` for a dataset in its own layout
(:mod:`medpeft.data.sources.dataset_presets`: ham10000, fitzpatrick17k, smdg).

Options:
    path=<column>      image path, relative to ``root`` (default: the first of path, image,
                       filename, file, image_id that the header has, any case)
    label=<column>     one class column; values are class names (sorted alphabetically) or
                       numbers; default: a column named ``label``
    labels=<a,b,...>   several 0/1 columns, one finding each (multilabel)
    task=<task>        binary | multiclass | multilabel; default inferred: ``labels=`` ->
                       multilabel, a ``label=`` column with two classes -> binary (the second
                       sorted class is the positive one), more -> multiclass
    split=<column>     train/val/test per row (also valid/validation); default: a column named
                       ``split`` if there is one, else a seeded stratified split by
                       ``val=0.1&test=0.2&seed=0`` (as ``folder:``; multilabel rows are
                       stratified by their rarest positive finding)
    group=<column>     patient (or lesion) id: the automatic split keeps each group's rows in
                       one split (:mod:`medpeft.data.sources.group_split`)
    subgroup=<column>  a per-image attribute kept for evaluation per subgroup (sex, skin type):
                       ``MedicalDataset.subgroups``; an empty cell is the subgroup ``""``
    root=<dir>         folder the paths are relative to (default: the CSV's folder); several
                       folders separated by ``os.pathsep`` (``:`` on Linux) are searched in turn
    ext=<.jpg>         appended to path values that do not end in an image extension
                       (HAM10000's image_id)
    drop=<v1,v2>       rows whose class (``label=``) is one of these values are left out, as
                       numbers when both are numbers (``-1`` drops ``-1.0``); listed in notes
    names=<a,b,...>    names for the classes, in their sorted order (negative first if binary)
    preset=<name>      defaults for all of the above from a known dataset layout; options given
                       in the spec win

Numbers are read as numbers: when every value of a class column parses as a finite number and
all are whole, the classes are those integers, sorted (``1``, ``1.0`` and ``01`` are one class,
named ``1``); a column mixing numbers and names, or holding non-whole numbers, is an error
naming the column and the offending values with their lines. A multilabel cell is any number
equal to 0 or 1 (``1``, ``1.0``).

Rows with a missing value, an unknown split or a multilabel value other than 0/1 are errors
naming ``file:line`` (or skipped and listed in one warning under ``skip_bad``); a missing
column is an error listing the columns the file has. Read with the stdlib ``csv`` module.

This module holds the source: options, the files, which column is which, and the splits (a
split column, else a seeded stratified split, by group when ``group=``). The rows are read in
:mod:`.csv_rows`, the label cells become labels in :mod:`.csv_labels`.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..base import TASKS, BadItems, DataError, FileImages
from ..decode import probe_channels
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData
from .csv_labels import multilabel_labels, renamed, single_labels
from .csv_rows import Columns, Rows, path_column, read_csv, read_rows
from .dataset_presets import CSV_PRESETS, CsvPreset
from .folder import SPLIT_DEFAULTS, SPLIT_OPTIONS, stratified_split
from .group_split import group_split

OPTIONS = {"path": str, "label": str, "labels": str, "task": str, "split": str, "root": str,
           "ext": str, "group": str, "subgroup": str, "drop": str, "names": str, "preset": str,
           **SPLIT_OPTIONS}
#: options that shape the automatic split, so they cannot go with a split column
AUTOMATIC_SPLIT_OPTIONS = (*SPLIT_OPTIONS, "group")


@SOURCES.register("csv")
class CsvSource(DataSource):
    """Images listed in a CSV file with a class column or several 0/1 finding columns."""

    def read(self) -> SourceData:
        options = take_options(self.spec, OPTIONS)
        if options.get("task") not in (None, *TASKS):
            raise ValueError(f"{self.spec.text}: task must be one of {TASKS}, "
                             f"got {options['task']!r}")
        preset = self._preset(options.get("preset"))
        file = self._file(preset)
        header, records = read_csv(file)
        if preset is not None:
            options = {**preset.defaults(header), **options}
        columns = self._columns(options, header, file)
        bad = BadItems(self.skip_bad)
        roots = self._roots(options, file, preset)
        rows, notes = read_rows(file, records, columns, options, bad, roots, self.spec.text)
        bad.warn(self.spec.text)
        if not rows.paths:
            raise DataError(f"{file}: no usable rows")
        task = options.get("task")
        if "labels" in options:
            names = tuple(columns.names[i] for i in columns.labels)
            task, names, labels = multilabel_labels(task, names, rows.values, self.spec.text)
        else:
            values = [row[0] for row in rows.values]
            task, names, labels = single_labels(task, columns.names[columns.labels[0]], values,
                                                rows.origins, file, self.spec.text)
        names = renamed(names, options.get("names"), task, self.spec.text)
        splits = self._splits(file, rows, labels, task, options)
        name = f"csv:{options['preset']}" if preset is not None else f"csv:{file.stem}"
        return SourceData(name=name, task=task, label_names=names,
                          channels=probe_channels(rows.paths), splits=splits,
                          skipped=list(bad.items), subgroup=options.get("subgroup"), notes=notes)

    # -- files -----------------------------------------------------------------------------
    def _preset(self, name: str | None) -> CsvPreset | None:
        if name is None:
            return None
        try:
            return CSV_PRESETS.get(name.lower())
        except KeyError as err:
            raise ValueError(f"{self.spec.text}: {err}") from None

    def _file(self, preset: CsvPreset | None) -> Path:
        """The table: the spec's target, or the preset's file name inside a target folder."""
        file = Path(self.spec.target).expanduser()
        if self.spec.target and file.is_dir():
            if preset is None:
                raise DataError(f"{self.spec.text}: {file} is a folder; name the CSV file, or "
                                f"give preset=<name> ({', '.join(CSV_PRESETS.names())})")
            file = file / preset.file
        if not self.spec.target or not file.is_file():
            expected = f" (the {preset.file!r} of the preset)" if preset is not None else ""
            raise DataError(f"{self.spec.text}: CSV file {str(file)!r}{expected} not found")
        return file

    def _roots(self, options: dict, file: Path, preset: CsvPreset | None) -> list[Path]:
        """Image folders, searched in turn: root=, else the preset's that exist, else the CSV's."""
        if options.get("root"):
            roots = [Path(part).expanduser() for part in options["root"].split(os.pathsep) if part]
            missing = [str(root) for root in roots if not root.is_dir()]
            if missing:
                raise DataError(f"{self.spec.text}: image folder(s) {missing} (root=) not found")
            return roots
        folders = [file.parent / name for name in (preset.image_folders if preset else ())]
        return [folder for folder in folders if folder.is_dir()] or [file.parent]

    # -- columns ---------------------------------------------------------------------------
    def _columns(self, options: dict, header: list[str], file: Path) -> Columns:
        def find(name: str, what: str) -> int:
            if name not in header:
                raise DataError(f"{file}: no column {name!r} ({what}); the file has columns "
                                f"{header}")
            return header.index(name)

        if "label" in options and "labels" in options:
            raise ValueError(f"{self.spec.text}: give label=<column> or labels=<a,b,...>, "
                             "not both")
        path = find(options["path"], "path=") if "path" in options else path_column(header, file)
        if "labels" in options:
            wanted = [name.strip() for name in options["labels"].split(",") if name.strip()]
            labels = [find(name, "labels=") for name in wanted]
        elif "label" in options or "label" in header:
            labels = [find(options.get("label", "label"), "label=")]
        else:
            raise DataError(f"{file}: say which column holds the labels: label=<column> for a "
                            "class column, labels=<a,b,...> for 0/1 findings; the file has "
                            f"columns {header}")
        split = find(options["split"], "split=") if "split" in options else (
            header.index("split") if "split" in header else None)
        given = sorted(key for key in self.spec.options if key in AUTOMATIC_SPLIT_OPTIONS)
        if split is not None and given:  # (a preset's group= just gives way to a split column)
            raise ValueError(f"{self.spec.text}: the split comes from column {header[split]!r}, "
                             f"so {given} do not apply")
        group = find(options["group"], "group=") if "group" in options and split is None else None
        subgroup = find(options["subgroup"], "subgroup=") if "subgroup" in options else None
        return Columns(path, labels, split, header, group, subgroup)

    # -- splits ----------------------------------------------------------------------------
    def _splits(self, file: Path, rows: Rows, labels: np.ndarray, task: str,
                options: dict) -> dict[str, SplitData]:
        images = FileImages(rows.paths, rows.origins)
        subgroups = np.array(rows.subgroups, dtype=str) if "subgroup" in options else None
        if rows.splits[0] is not None:
            given = np.array(rows.splits)
            parts = {name: np.flatnonzero(given == name) for name in ("train", "val", "test")}
            parts = {name: index for name, index in parts.items() if len(index)}
            note = f"{file} (split column)"
        else:
            settings = {**SPLIT_DEFAULTS, **{k: options[k] for k in SPLIT_OPTIONS if k in options}}
            if rows.groups:
                parts = group_split(_strata(labels, task), np.array(rows.groups), **settings)
                settings["group"] = options["group"]
            else:
                parts = stratified_split(_strata(labels, task), **settings)
            note = f"{file} ({', '.join(f'{k}={v}' for k, v in settings.items())})"
        whole = SplitData(images, labels, str(file), subgroups)
        return {name: replace(whole.subset(index), origin=f"{name} of {note}")
                for name, index in parts.items()}


def _strata(labels: np.ndarray, task: str) -> np.ndarray:
    """One stratum per row: the class, or for multilabel rows the rarest positive finding."""
    if task != "multilabel":
        return labels[:, 0]
    counts = labels.sum(axis=0).astype(np.float64)
    rarity = np.where(labels > 0, counts[None, :], np.inf)
    strata = np.argmin(rarity, axis=1)
    strata[~labels.any(axis=1)] = -1
    return strata
