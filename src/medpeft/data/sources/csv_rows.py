"""The rows of a ``csv:`` table (see :mod:`.csv_table` for the options): the file read with the
stdlib ``csv`` module, the header positions of the columns used, each row checked, ``drop=``,
and each image path found under the image folders.

Rows with a missing value, an unknown split or a multilabel value other than 0/1 are reported
with ``file:line`` to a :class:`~medpeft.data.base.BadItems` (an error, or under ``skip_bad``
one warning); rows left out on purpose (``drop=``) become notes.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..base import BadItems, DataError
from ..decode import DICOM_SUFFIXES
from .csv_labels import value_key, zero_one
from .folder import IMAGE_EXTENSIONS

PATH_COLUMNS = ("path", "image", "filename", "file", "image_id")
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IMAGE_SUFFIXES = frozenset((*IMAGE_EXTENSIONS, *DICOM_SUFFIXES, ".gif", ".webp"))


@dataclass
class Columns:
    """Header positions of the columns a table is read from."""

    path: int
    labels: list[int]
    split: int | None
    names: list[str]  # the header
    group: int | None = None
    subgroup: int | None = None


@dataclass
class Rows:
    """The good rows of a table, one entry each."""

    paths: list[str]
    origins: list[str]
    values: list[list[str]]  # the label cells
    splits: list[str | None]
    groups: list[str]  # the group cell, when there is a group column
    subgroups: list[str]  # the subgroup cell, when there is a subgroup column


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


def path_column(header: list[str], file: Path) -> int:
    """The first of PATH_COLUMNS the header has, in any case."""
    lowered = [name.lower() for name in header]
    for candidate in PATH_COLUMNS:
        if candidate in lowered:
            return lowered.index(candidate)
    raise DataError(f"{file}: no image path column (looked for {', '.join(PATH_COLUMNS)}); "
                    f"pass path=<column>; the file has columns {header}")


def read_rows(file: Path, records, columns: Columns, options: dict, bad: BadItems,
              roots: list[Path], spec_text: str) -> tuple[Rows, list[str]]:
    """The good rows, and notes on rows left out on purpose (drop=)."""
    multilabel = "labels" in options
    ext = options.get("ext", "")
    if ext and not ext.startswith("."):
        ext = "." + ext
    drop = Drop(options.get("drop", ""), columns, multilabel, spec_text)
    rows = Rows([], [], [], [], [], [])
    for line, record in records:
        where = f"{file}:{line}"
        problem = row_problem(record, columns, multilabel)
        if problem is not None:
            bad.report(where, problem)
            continue
        if drop.matches(record):
            continue
        relative = record[columns.path].strip()
        if ext and Path(relative).suffix.lower() not in IMAGE_SUFFIXES:
            relative += ext
        rows.paths.append(locate(relative, roots))
        rows.origins.append(where)
        rows.values.append([record[i].strip() for i in columns.labels])
        rows.splits.append(None if columns.split is None
                           else SPLIT_VALUES[record[columns.split].strip().lower()])
        if columns.group is not None:
            rows.groups.append(record[columns.group].strip())
        if columns.subgroup is not None:
            rows.subgroups.append(record[columns.subgroup].strip())
    return rows, drop.notes(file)


def row_problem(record: list[str], columns: Columns, multilabel: bool) -> str | None:
    """Why a row cannot be used, or None."""
    if len(record) != len(columns.names):
        return f"has {len(record)} fields, the header has {len(columns.names)}"
    needed = [columns.path, *columns.labels]
    needed += [i for i in (columns.split, columns.group) if i is not None]
    for i in needed:
        if not record[i].strip():
            return f"missing value in column {columns.names[i]!r}"
    if multilabel:
        for i in columns.labels:
            if zero_one(record[i].strip()) is None:
                return f"column {columns.names[i]!r} must be 0 or 1, found {record[i].strip()!r}"
    if columns.split is not None and record[columns.split].strip().lower() not in SPLIT_VALUES:
        return (f"unknown split {record[columns.split].strip()!r} in column "
                f"{columns.names[columns.split]!r} (use train, val or test)")
    return None


class Drop:
    """``drop=``: rows whose class value is one of the given values (numbers as numbers)."""

    def __init__(self, given: str, columns: Columns, multilabel: bool, spec_text: str):
        self.values = [value.strip() for value in given.split(",") if value.strip()]
        if self.values and multilabel:
            raise ValueError(f"{spec_text}: drop= leaves out rows by their class (label=); it "
                             "does not apply to 0/1 finding columns (labels=)")
        self.keys = {value_key(value) for value in self.values}
        self.column = columns.labels[0]
        self.name = columns.names[self.column]
        self.count = 0

    def matches(self, record: list[str]) -> bool:
        hit = bool(self.keys) and value_key(record[self.column].strip()) in self.keys
        self.count += hit
        return hit

    def notes(self, file: Path) -> list[str]:
        if not self.count:
            return []
        return [f"dropped {self.count} row(s) of {file.name} with {self.name} in "
                f"{{{', '.join(self.values)}}} (drop=)"]


def locate(relative: str, roots: list[Path]) -> str:
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
