"""Human-readable summary of a loaded dataset (``medpeft data info`` and the start of every run)."""
from __future__ import annotations

from ..table import Table
from .base import DataSplits, positives_per_label


def describe(splits: DataSplits) -> str:
    info = splits.info
    size = f"{info.image_size[0]}x{info.image_size[1]}" if info.image_size else "varies"
    head = (f"{info.name}: {info.task}, {len(info.column_names)} output(s), "
            f"{info.channels} channel(s), native size {size}")
    if splits.fraction < 1.0:
        full = f" of {splits.full_train_size}" if splits.full_train_size else ""
        head += (f"\ntraining fraction {splits.fraction:g}: {len(splits.train)}{full} images "
                 f"({splits.subset_note})")
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
        cells = [f"{c[name]} ({100.0 * c[name] / max(len(d), 1):.1f}%)" for c, d in zip(counts, datasets)]
        table.add_row(name, *cells)
    return table
