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
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..base import TASKS, BadItems, DataError, FileImages
from ..decode import DICOM_SUFFIXES, probe_channels
from ..spec import take_options
from .base import SOURCES, DataSource, SourceData, SplitData
from .dataset_presets import CSV_PRESETS, CsvPreset
from .folder import IMAGE_EXTENSIONS, SPLIT_DEFAULTS, SPLIT_OPTIONS, stratified_split
from .group_split import group_split

PATH_COLUMNS = ("path", "image", "filename", "file", "image_id")
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
OPTIONS = {"path": str, "label": str, "labels": str, "task": str, "split": str, "root": str,
           "ext": str, "group": str, "subgroup": str, "drop": str, "names": str, "preset": str,
           **SPLIT_OPTIONS}
IMAGE_SUFFIXES = frozenset((*IMAGE_EXTENSIONS, *DICOM_SUFFIXES, ".gif", ".webp"))
#: options that shape the automatic split, so they cannot go with a split column
AUTOMATIC_SPLIT_OPTIONS = (*SPLIT_OPTIONS, "group")


@dataclass
class _Columns:
    """Header positions of the columns a table is read from."""

    path: int
    labels: list[int]
    split: int | None
    names: list[str]  # the header
    group: int | None = None
    subgroup: int | None = None


@dataclass
class _Rows:
    """The good rows of a table, one entry each."""

    paths: list[str]
    origins: list[str]
    values: list[list[str]]  # the label cells
    splits: list[str | None]
    groups: list[str]  # the group cell, when there is a group column
    subgroups: list[str]  # the subgroup cell, when there is a subgroup column


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
        rows, notes = self._rows(file, records, columns, options, bad, roots)
        bad.warn(self.spec.text)
        if not rows.paths:
            raise DataError(f"{file}: no usable rows")
        if "labels" in options:
            task, names, labels = self._multilabel(options.get("task"), columns, rows)
        else:
            task, names, labels = self._single_label(options.get("task"), columns, rows, file)
        names = self._renamed(names, options.get("names"), task)
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
    def _columns(self, options: dict, header: list[str], file: Path) -> _Columns:
        def find(name: str, what: str) -> int:
            if name not in header:
                raise DataError(f"{file}: no column {name!r} ({what}); the file has columns "
                                f"{header}")
            return header.index(name)

        if "label" in options and "labels" in options:
            raise ValueError(f"{self.spec.text}: give label=<column> or labels=<a,b,...>, "
                             "not both")
        path = find(options["path"], "path=") if "path" in options else _path_column(header, file)
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
        return _Columns(path, labels, split, header, group, subgroup)

    # -- rows ------------------------------------------------------------------------------
    def _rows(self, file: Path, records, columns: _Columns, options: dict, bad: BadItems,
              roots: list[Path]) -> tuple[_Rows, list[str]]:
        """The good rows, and notes on rows left out on purpose (drop=)."""
        multilabel = "labels" in options
        ext = options.get("ext", "")
        if ext and not ext.startswith("."):
            ext = "." + ext
        drop = _Drop(options.get("drop", ""), columns, multilabel, self.spec.text)
        rows = _Rows([], [], [], [], [], [])
        for line, record in records:
            where = f"{file}:{line}"
            problem = _row_problem(record, columns, multilabel)
            if problem is not None:
                bad.report(where, problem)
                continue
            if drop.matches(record):
                continue
            relative = record[columns.path].strip()
            if ext and Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
                relative += ext
            rows.paths.append(_locate(relative, roots))
            rows.origins.append(where)
            rows.values.append([record[i].strip() for i in columns.labels])
            rows.splits.append(None if columns.split is None
                               else SPLIT_VALUES[record[columns.split].strip().lower()])
            if columns.group is not None:
                rows.groups.append(record[columns.group].strip())
            if columns.subgroup is not None:
                rows.subgroups.append(record[columns.subgroup].strip())
        return rows, drop.notes(file)

    # -- labels ----------------------------------------------------------------------------
    def _multilabel(self, task: str | None, columns: _Columns, rows: _Rows):
        if task not in (None, "multilabel"):
            raise ValueError(f"{self.spec.text}: labels= gives 0/1 findings (multilabel); for a "
                             f"{task} task name one class column with label=")
        names = tuple(columns.names[i] for i in columns.labels)
        labels = np.array([[_zero_one(v) for v in row] for row in rows.values], np.int64)
        return "multilabel", names, labels

    def _single_label(self, task: str | None, columns: _Columns, rows: _Rows, file: Path):
        if task == "multilabel":
            raise ValueError(f"{self.spec.text}: a multilabel task needs labels=<a,b,...> "
                             "(0/1 columns)")
        column = columns.names[columns.labels[0]]
        values = [row[0] for row in rows.values]
        names, index = _classes(values, rows.origins, column, file)
        if len(names) < 2:
            raise DataError(f"{file}: column {column!r} has only the class {list(names)}; "
                            "a classifier needs at least two")
        if task == "binary" and len(names) != 2:
            raise DataError(f"{file}: task=binary needs two classes, column {column!r} has "
                            f"{len(names)}: {list(names)}")
        task = task or ("binary" if len(names) == 2 else "multiclass")
        return task, names, np.array([index[v] for v in values], np.int64).reshape(-1, 1)

    def _renamed(self, names: tuple[str, ...], given: str | None, task: str) -> tuple[str, ...]:
        if not given:
            return names
        new = tuple(name.strip() for name in given.split(","))
        if len(new) != len(names) or not all(new):
            order = "negative first, " if task == "binary" else ""
            raise DataError(f"{self.spec.text}: names= must name the {len(names)} classes in "
                            f"their sorted order ({order}{', '.join(names)}), got {list(new)}")
        return new

    # -- splits ----------------------------------------------------------------------------
    def _splits(self, file: Path, rows: _Rows, labels: np.ndarray, task: str,
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


def _locate(relative: str, roots: list[Path]) -> str:
    """The image's path: under the first root that has it (the first root if none has it, so
    the file check reports it missing), or the path itself when it is absolute."""
    if os.path.isabs(relative):
        return relative
    if len(roots) > 1:
        for root in roots:
            candidate = os.path.join(root, relative)
            if os.path.exists(candidate):
                return candidate
    return os.path.join(roots[0], relative)


class _Drop:
    """``drop=``: rows whose class value is one of the given values (numbers as numbers)."""

    def __init__(self, given: str, columns: _Columns, multilabel: bool, spec_text: str):
        self.values = [value.strip() for value in given.split(",") if value.strip()]
        if self.values and multilabel:
            raise ValueError(f"{spec_text}: drop= leaves out rows by their class (label=); it "
                             "does not apply to 0/1 finding columns (labels=)")
        self.keys = {_value_key(value) for value in self.values}
        self.column = columns.labels[0]
        self.name = columns.names[self.column]
        self.count = 0

    def matches(self, record: list[str]) -> bool:
        hit = bool(self.keys) and _value_key(record[self.column].strip()) in self.keys
        self.count += hit
        return hit

    def notes(self, file: Path) -> list[str]:
        if not self.count:
            return []
        return [f"dropped {self.count} row(s) of {file.name} with {self.name} in "
                f"{{{', '.join(self.values)}}} (drop=)"]


def _value_key(value: str):
    """What drop= compares: the number for numbers (so -1 matches -1.0), else the text."""
    number = _number(value)
    return value if number is None else number


def _path_column(header: list[str], file: Path) -> int:
    """The first of PATH_COLUMNS the header has, in any case."""
    lowered = [name.lower() for name in header]
    for candidate in PATH_COLUMNS:
        if candidate in lowered:
            return lowered.index(candidate)
    raise DataError(f"{file}: no image path column (looked for {', '.join(PATH_COLUMNS)}); "
                    f"pass path=<column>; the file has columns {header}")


def read_csv(file: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and (line number, cells) of every non-blank row; line numbers as editors show."""
    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            records = [(reader.line_num, row) for row in reader
                       if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{file}: cannot read the CSV file ({err})") from None
    if not header:
        raise DataError(f"{file}: the CSV file is empty; it needs a header row and one row "
                        "per image")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{file}: duplicate column names {duplicates}")
    if not records:
        raise DataError(f"{file}: the CSV file has a header but no rows")
    return header, records


def _row_problem(record: list[str], columns: _Columns, multilabel: bool) -> str | None:
    if len(record) != len(columns.names):
        return f"has {len(record)} fields, the header has {len(columns.names)}"
    needed = [columns.path, *columns.labels]
    needed += [i for i in (columns.split, columns.group) if i is not None]
    for i in needed:
        if not record[i].strip():
            return f"missing value in column {columns.names[i]!r}"
    if multilabel:
        for i in columns.labels:
            if _zero_one(record[i].strip()) is None:
                return f"column {columns.names[i]!r} must be 0 or 1, found {record[i].strip()!r}"
    if columns.split is not None and record[columns.split].strip().lower() not in SPLIT_VALUES:
        return (f"unknown split {record[columns.split].strip()!r} in column "
                f"{columns.names[columns.split]!r} (use train, val or test)")
    return None


def _number(value: str) -> float | None:
    """The value as a finite number, else None (so ``nan`` and ``inf`` count as names)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _zero_one(value: str) -> int | None:
    """A multilabel cell: 0 or 1 for any number equal to them (``1``, ``1.0``), else None."""
    number = _number(value)
    return int(number) if number in (0.0, 1.0) else None


def _classes(values: list[str], origins: list[str], column: str,
             file: Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """Class names and each value's index.

    All values numbers and whole: the integers, sorted numerically and named by their integer
    (``"1"``, ``"1.0"``, ``"01"`` are class ``1``). All names: sorted alphabetically. A mix, or
    numbers with a fraction, is an error naming the values and where they are.
    """
    numbers = {value: _number(value) for value in set(values)}
    named = sorted(value for value, number in numbers.items() if number is None)
    if named and len(named) < len(numbers):
        raise _mixed_column(values, origins, numbers, column, file)
    if named:
        return tuple(named), {name: i for i, name in enumerate(named)}
    fractional = sorted((v for v, n in numbers.items() if not n.is_integer()), key=numbers.get)
    if fractional:
        raise DataError(f"{file}: column {column!r} holds numbers that are not whole: "
                        f"{_where(fractional, values, origins)}; class labels must be whole "
                        "numbers or names: correct these values, or name another column")
    ordered = sorted({int(n) for n in numbers.values()})
    rank = {number: i for i, number in enumerate(ordered)}
    return tuple(str(n) for n in ordered), {v: rank[int(n)] for v, n in numbers.items()}


def _mixed_column(values, origins, numbers: dict, column: str, file: Path) -> DataError:
    """A class column with numbers and names: the rarer kind is shown as the offending one."""
    is_name = [numbers[value] is None for value in values]
    odd_names = sum(is_name) <= len(values) - sum(is_name)
    odd = sorted({v for v, name in zip(values, is_name) if name == odd_names})
    usual = sorted({v for v, name in zip(values, is_name) if name != odd_names})
    kinds = ("names", "numbers") if odd_names else ("numbers", "names")
    return DataError(f"{file}: column {column!r} mixes numbers and names: {kinds[0]} "
                     f"{_where(odd, values, origins)} among {kinds[1]} "
                     f"{', '.join(map(repr, usual[:5]))}{' ...' if len(usual) > 5 else ''}; "
                     "a class column holds either names or numbers: correct those rows")


def _where(shown: list[str], values: list[str], origins: list[str], limit: int = 5) -> str:
    """``'x' at file:line`` for the first row of each value, at most ``limit`` of them."""
    first = {}
    for value, origin in zip(values, origins):
        first.setdefault(value, origin)
    text = ", ".join(f"{value!r} at {first[value]}" for value in shown[:limit])
    return text + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def _strata(labels: np.ndarray, task: str) -> np.ndarray:
    """One stratum per row: the class, or for multilabel rows the rarest positive finding."""
    if task != "multilabel":
        return labels[:, 0]
    counts = labels.sum(axis=0).astype(np.float64)
    rarity = np.where(labels > 0, counts[None, :], np.inf)
    strata = np.argmin(rarity, axis=1)
    strata[~labels.any(axis=1)] = -1
    return strata
