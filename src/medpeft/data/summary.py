"""Human-readable summary of a loaded dataset (``medpeft data info`` and the start of every run).

The table counts images per split, positives (or class members) per label, and images per
subgroup value when the dataset has subgroups (``csv:...?subgroup=<column>``).
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
    return head


def split_table(splits: DataSplits) -> Table:
    """Rows: image count, then positives (or class members) per label; columns: splits."""
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
    return table


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
