"""Human-readable summary of a loaded dataset (``medpeft data info`` and the start of every run).

The table counts images per split, positives (or class members) per label, and images per
subgroup value when the dataset has subgroups (``csv:...?subgroup=<column>``); with
``duplicates=True`` (``medpeft data info``) also the duplicates :mod:`medpeft.data.duplicates`
counted: per split, rows repeating a path or content of the same split, and images whose path
or content is in an earlier split too (train, val, test order).
"""
from __future__ import annotations

import numpy as np

from ..table import Table
from .base import DataSplits, MedicalDataset, positives_per_label

MISSING = "(missing)"  # how an empty subgroup cell is shown


def describe(splits: DataSplits) -> str:
    info = splits.info
    size = f"{info.image_size[0]}x{info.image_size[1]}" if info.image_size else "varies"
    head = (f"{info.name}: {info.task}, {len(info.column_names)} output(s), "
            f"{info.channels} channel(s), native size {size}")
    if splits.fraction < 1.0:
        full = f" of {splits.full_train_size}" if splits.full_train_size else ""
        head += (f"\ntraining fraction {splits.fraction:g}: {len(splits.train)}{full} images "
                 f"({splits.subset_note})")
    if info.subgroup is not None:
        values = len(set().union(*(subgroup_counts(d) for d in (splits.train, splits.val, splits.test))))
        head += f"\nsubgroups: {info.subgroup} ({values} values, counts below)"
    for note in splits.notes:
        head += f"\n{note}"
    if splits.skipped:
        head += f"\nskipped {len(splits.skipped)} bad item(s) (--skip-bad)"
    line = duplicate_line(splits.duplicates)
    if line:
        head += f"\n{line}"
    return head


def split_table(splits: DataSplits, duplicates: bool = False) -> Table:
    """Rows: image count, then positives (or class members) per label (then duplicates, if
    asked); columns: splits."""
    info = splits.info
    kind = "class members" if info.task == "multiclass" else "positives"
    train_title = "train" if splits.fraction == 1.0 else f"train ({splits.fraction:g})"
    table = Table(title=f"{info.name} — {kind} per split", columns=["", train_title, "val", "test"])
    datasets = [splits.train, splits.val, splits.test]
    table.add_row("images", *[str(len(d)) for d in datasets], rule=True)
    counts = [positives_per_label(d.labels, info) for d in datasets]
    for name in counts[0]:
        table.add_row(name, *_cells(counts, datasets, name))
    if info.subgroup is not None:
        _add_subgroup_rows(table, info.subgroup, datasets)
    if duplicates and splits.duplicates is not None:
        _add_duplicate_rows(table, splits.duplicates)
    return table


def _add_duplicate_rows(table: Table, found) -> None:
    """Four rows: repeats within each split and overlaps with earlier splits, by path and content
    ("-" where nothing was compared: arrays have no paths, ``verify="none"`` compares no content)."""
    content = found.content if found.content != "none" else "content (not compared)"
    later = lambda pairs: {name: sum(n for pair, n in pairs.items() if pair.split("/")[1] == name)
                           for name in ("train", "val", "test")}
    table.rules_after.add(len(table.rows) - 1)
    rows = [("repeated path in split", found.path_within), (f"repeated {content} in split", found.pixels_within),
            ("path in an earlier split", later(found.path_across)),
            (f"{content} in an earlier split", later(found.pixels_across))]
    for title, counts in rows:
        compared = found.paths if "path" in title.split()[:2] else found.content != "none"
        table.add_row(title, *[str(counts.get(name, 0)) if compared else "-" for name in ("train", "val", "test")])


def duplicate_line(found) -> str | None:
    """One line on what the duplicate check counted (None: nothing found)."""
    if found is None or not found.any():
        return None
    parts = [f"{n} repeated {what} in {name}" for what, counts in (("path(s)", found.path_within),
                                                                  (f"{found.content}", found.pixels_within))
             for name, n in counts.items() if n]
    parts += [f"{n} of {pair.split('/')[1]} with the {what} of an image of {pair.split('/')[0]}"
              for what, counts in (("path", found.path_across), (found.content, found.pixels_across))
              for pair, n in counts.items() if n]
    return "duplicates: " + "; ".join(parts)


def subgroup_counts(dataset: MedicalDataset) -> dict[str, int]:
    """Items per subgroup value, sorted by value (``{}`` without subgroups)."""
    if dataset.subgroups is None:
        return {}
    values, counts = np.unique(dataset.subgroups, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _add_subgroup_rows(table: Table, column: str, datasets: list[MedicalDataset]) -> None:
    """One row per subgroup value (images per split), after the label rows."""
    counts = [subgroup_counts(d) for d in datasets]
    values = sorted(set().union(*counts))
    table.rules_after.add(len(table.rows) - 1)
    for value in values:
        table.add_row(f"{column} = {value or MISSING}", *_cells(counts, datasets, value))


def _cells(counts: list[dict], datasets: list[MedicalDataset], key) -> list[str]:
    return [f"{c.get(key, 0)} ({100.0 * c.get(key, 0) / max(len(d), 1):.1f}%)"
            for c, d in zip(counts, datasets)]
