"""The label cells of a ``csv:`` table read as labels (see :mod:`.csv_table` for the options).

A class column (``label=``): when every value parses as a finite number and all are whole, the
classes are those integers, sorted (``1``, ``1.0`` and ``01`` are one class, named ``1``); else
the values are class names, sorted alphabetically; a column mixing numbers and names, or
holding non-whole numbers, is an error naming the column and the offending values with their
lines (:func:`classes`). Finding columns (``labels=``): a cell is any number equal to 0 or 1
(:func:`zero_one`). ``drop=`` compares values the same way (:func:`value_key`). ``names=``
renames the classes in their sorted order (:func:`renamed`).

Written here because the stdlib ``csv`` module gives text only, and these rules (numbers as
numbers, errors with ``file:line``) are medpeft's.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..base import DataError


def multilabel_labels(task: str | None, names: tuple[str, ...], values: list[list[str]],
                      spec_text: str) -> tuple[str, tuple[str, ...], np.ndarray]:
    """(task, label names, labels (N, L)) of 0/1 finding columns; the cells were checked
    (:func:`zero_one`) row by row when the table was read."""
    if task not in (None, "multilabel"):
        raise ValueError(f"{spec_text}: labels= gives 0/1 findings (multilabel); for a "
                         f"{task} task name one class column with label=")
    labels = np.array([[zero_one(v) for v in row] for row in values], np.int64)
    return "multilabel", names, labels


def single_labels(task: str | None, column: str, values: list[str], origins: list[str], file: Path,
                  spec_text: str) -> tuple[str, tuple[str, ...], np.ndarray]:
    """(task, class names, labels (N, 1)) of one class column: binary with two classes, else
    multiclass, unless ``task`` says which."""
    if task == "multilabel":
        raise ValueError(f"{spec_text}: a multilabel task needs labels=<a,b,...> "
                         "(0/1 columns)")
    names, index = classes(values, origins, column, file)
    if len(names) < 2:
        raise DataError(f"{file}: column {column!r} has only the class {list(names)}; "
                        "a classifier needs at least two")
    if task == "binary" and len(names) != 2:
        raise DataError(f"{file}: task=binary needs two classes, column {column!r} has "
                        f"{len(names)}: {list(names)}")
    task = task or ("binary" if len(names) == 2 else "multiclass")
    return task, names, np.array([index[v] for v in values], np.int64).reshape(-1, 1)


def renamed(names: tuple[str, ...], given: str | None, task: str, spec_text: str) -> tuple[str, ...]:
    """``names=``: new names for the classes, in their sorted order."""
    if not given:
        return names
    new = tuple(name.strip() for name in given.split(","))
    if len(new) != len(names) or not all(new):
        order = "negative first, " if task == "binary" else ""
        raise DataError(f"{spec_text}: names= must name the {len(names)} classes in "
                        f"their sorted order ({order}{', '.join(names)}), got {list(new)}")
    return new


def number(value: str) -> float | None:
    """The value as a finite number, else None (so ``nan`` and ``inf`` count as names)."""
    try:
        parsed = float(value)
    except ValueError:
        return None
    return parsed if math.isfinite(parsed) else None


def zero_one(value: str) -> int | None:
    """A multilabel cell: 0 or 1 for any number equal to them (``1``, ``1.0``), else None."""
    parsed = number(value)
    return int(parsed) if parsed in (0.0, 1.0) else None


def value_key(value: str):
    """What drop= compares: the number for numbers (so -1 matches -1.0), else the text."""
    parsed = number(value)
    return value if parsed is None else parsed


def classes(values: list[str], origins: list[str], column: str,
            file: Path) -> tuple[tuple[str, ...], dict[str, int]]:
    """Class names and each value's index.

    All values numbers and whole: the integers, sorted numerically and named by their integer
    (``"1"``, ``"1.0"``, ``"01"`` are class ``1``). All names: sorted alphabetically. A mix, or
    numbers with a fraction, is an error naming the values and where they are.
    """
    numbers = {value: number(value) for value in set(values)}
    named = sorted(value for value, parsed in numbers.items() if parsed is None)
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
    rank = {value: i for i, value in enumerate(ordered)}
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
