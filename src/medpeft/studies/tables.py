"""Result tables shaped like the papers' (methods x label fractions).

Built once as a :class:`medpeft.table.Table` and rendered for the terminal, Markdown, CSV or
JSON, so the terminal and ``table.md`` can never disagree. Several seeds per cell give
mean ± std.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..config import atomic_write_text
from ..table import Table


def percent(value: float | None, digits: int = 1) -> str:
    """Metrics are fractions in [0, 1]; reports show percentages (DESIGN.md)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.{digits}f}"


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def paper_table(results: dict, methods, fractions, labels: dict[str, str], *, title: str,
                metric: str = "auroc", baseline: str = "fft", contender: str = "lora") -> Table:
    """Rows: methods, then ``contender − baseline``; columns: label fractions, trainable share,
    total wall time. ``results[(method, fraction)]`` is a run's metrics dict or a list of them
    (one per seed)."""
    columns = ["Method"] + [f"{f:.0%} labels" for f in fractions] + ["Trainable", "Time (s)"]
    table = Table(title=title, columns=columns)
    for method in methods:
        cells = [mean_std([m["test"][metric] for m in _as_list(results[(method, f)])]) for f in fractions]
        first = _as_list(results[(method, fractions[0])])[0]
        share = 100.0 * first["trainable_params"] / first["total_params"]
        seconds = sum(m["wall_time_s"] for f in fractions for m in _as_list(results[(method, f)]))
        table.add_row(labels.get(method, method), *cells, f"{share:.2f}%", f"{seconds:.0f}")
    if baseline in methods and contender in methods:
        table.rules_after.add(len(table.rows) - 1)
        deltas = []
        for f in fractions:
            diffs = [c["test"][metric] - b["test"][metric]
                     for c, b in zip(_as_list(results[(contender, f)]), _as_list(results[(baseline, f)]))]
            deltas.append(("+" if statistics.mean(diffs) >= 0 else "") + mean_std(diffs))
        table.add_row(f"{labels.get(contender, contender)} − {labels.get(baseline, baseline)}", *deltas, "", "")
    return table


def write_markdown(path: str | Path, table: Table, *, command: str, note: str = "") -> str:
    """The table plus the exact command that made it (every number in the docs has one)."""
    text = table.to_markdown() + f"\nMade by: `{command}`" + (f"; {note}" if note else "") + "\n"
    atomic_write_text(path, text)
    return text
