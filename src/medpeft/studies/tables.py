"""Result tables shaped like the papers': method rows by dataset x label-fraction columns.

Built once as a :class:`medpeft.table.Table` and rendered for the terminal, Markdown, CSV or
JSON, so the terminal and ``table.md`` can never disagree. A cell reads as MED-PEFT's Table 1
does: the mean over seeds ± its standard deviation, the difference of the mean to the baseline
row (``↑0.4`` / ``↓1.2`` percentage points), then the 95% CI of the mean (``[lo, hi]``, see
:mod:`medpeft.studies.grid`). The best result of a column is bold, chosen by validation: the
result with the best seed-mean validation AUROC (ties: all), whatever its test number; a column
with a result whose records hold no validation score (older studies) has no bold. A cell that is not a result
(a seed took fewer than 50 optimiser steps, ``†``, or its test metrics are flagged one-class,
``‡``) keeps its number, gets its marker and is never best. A cell with a seed whose best
validation was at its last epoch (still improving) is marked ``§``; it stays a result. A cell
whose searched value lies at the edge of its range (a record's ``at_edge``, see
:mod:`medpeft.studies.search`) is marked ``¶``. Published figures are rows of their own under a
rule, shown as printed and never ranked.
"""
from __future__ import annotations

import math
import statistics

from ..table import Table
from . import records as rec
from .grid import Grid, runs_note


def percent(value: float | None, digits: int = 1) -> str:
    """Metrics are fractions in [0, 1]; reports show percentages (docs/architecture.md, "Run directory")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.{digits}f}"


MARKERS = {"steps": "†", "one_class": "‡"}
FOOTNOTES = {
    "steps": f"† not a result: a seed took fewer than {rec.MIN_STEPS} optimiser steps.",
    "one_class": "‡ not a result: a seed's test metrics are flagged one-class.",
}
IMPROVING = "§"
IMPROVING_FOOTNOTE = "§ still improving: best validation at the last epoch (of a seed); a longer run might do better."
AT_EDGE = "¶"
AT_EDGE_FOOTNOTE = "¶ the search chose a value in the outer 5% of its range; a wider range might do better."
METRIC_TITLES = {"auroc": "test macro AUROC (%)", "f1": "test macro-F1 (%)"}


def fraction_label(fraction: float) -> str:
    """0.01 -> '1%', 0.005 -> '0.5%'."""
    return f"{100.0 * fraction:g}%"


def column_title(dataset: str, fraction: float) -> str:
    return f"{dataset} {fraction_label(fraction)}" if dataset else f"{fraction_label(fraction)} labels"


def delta_text(difference: float) -> str:
    """A difference of two fractions in percentage points: '↑0.4', '↓1.2', '=0.0'."""
    shown = f"{abs(100.0 * difference):.1f}"
    if float(shown) == 0.0:
        return f"={shown}"
    return ("↑" if difference > 0 else "↓") + shown


def cell_text(cell, base=None, show_ci: bool = True) -> str:
    """'92.7 ± 0.3 ↑0.4 [91.9, 93.4]' (+ a not-a-result marker); '–' for no cell."""
    if cell is None or math.isnan(cell.mean):
        return "–" if cell is None else "–" + _marks(cell)
    parts = [percent(cell.mean) + ("" if cell.std is None else f" ± {percent(cell.std)}")]
    if base is not None and not math.isnan(base.mean):
        parts.append(delta_text(cell.mean - base.mean))
    if show_ci and cell.ci is not None:
        parts.append(("≈" if cell.ci_method == "seed-ci-mean" else "")
                     + f"[{percent(cell.ci[0])}, {percent(cell.ci[1])}]")
    return " ".join(parts) + _marks(cell)


def _marks(cell) -> str:
    return ("".join(MARKERS[r] for r in cell.reasons) + (IMPROVING if cell.still_improving else "")
            + (AT_EDGE if _at_edge(cell) else ""))


def _at_edge(cell) -> bool:
    return any(r.get("at_edge") for r in cell.records)


def trainable_text(cells) -> str:
    """The row's trainable share of parameters, e.g. '0.523%' (a range when heads differ)."""
    shares = sorted({f"{100.0 * s:.3g}" for s in (rec.trainable_share(r) for c in cells for r in c.records)
                     if s is not None}, key=float)
    if not shares:
        return "–"
    return f"{shares[0]}%" if len(shares) == 1 else f"{shares[0]}–{shares[-1]}%"


def baseline_rows(grid: Grid, baseline: str) -> dict:
    """backbone -> the row the others are compared with: the row labelled ``baseline``, else
    the first row of method ``baseline``, of the same backbone."""
    found = {}
    for backbone in grid.backbones:
        rows = [row for row in grid.rows if row[1] == backbone]
        by_label = [row for row in rows if row[0] == baseline]
        by_method = [row for row in rows if grid.method_of(row) == baseline]
        if by_label or by_method:
            found[backbone] = (by_label or by_method)[0]
    return found


def study_table(grid: Grid, *, title: str, baseline: str = "fft", anchors=(), show_ci: bool = True,
                show_time: bool = False) -> Table:
    """The paper table of one metric: a row per method label (x backbone, with a Backbone column
    when there are several), a column per dataset x fraction, the trainable share, optionally
    the row's total wall time; published figures (``anchors``) in rows of their own below."""
    several = len(grid.backbones) > 1
    table = Table(title=title, columns=["Method"] + (["Backbone"] if several else [])
                  + [column_title(*column) for column in grid.columns] + ["Trainable"]
                  + (["Time (s)"] if show_time else []))
    baselines = baseline_rows(grid, baseline)
    for index, row in enumerate(grid.rows):
        base = baselines.get(row[1])
        cells = [cell_text(grid.get(row, column), None if base in (None, row) else grid.get(base, column), show_ci)
                 for column in grid.columns]
        seconds = sum(r["metrics"].get("wall_time_s", 0.0) for c in grid.row_cells(row) for r in c.records)
        block_ends = index + 1 < len(grid.rows) and grid.rows[index + 1][1] != row[1]
        table.add_row(row[0], *([row[1]] if several else []), *cells, trainable_text(grid.row_cells(row)),
                      *([f"{seconds:.0f}"] if show_time else []), rule=block_ends)
    unchosen = _bold_best(table, grid, first=1 + several)
    anchors = [a for a in rec.check_anchors(anchors) if a["metric"] == grid.metric]
    missed = _add_anchors(table, grid, anchors, several, show_time)
    table.caption = "\n".join(_caption(grid, baseline, baselines, len(anchors) > len(missed), missed, show_ci,
                                           unchosen))
    return table


def _bold_best(table: Table, grid: Grid, first: int) -> set:
    """Bold every result whose seed-mean validation AUROC is the column's best (test only
    reports); returns the columns left without bold because a result has no validation score."""
    unchosen = set()
    for offset, column in enumerate(grid.columns):
        results = {index: cell for index, row in enumerate(grid.rows)
                   if (cell := grid.get(row, column)) is not None and cell.is_result}
        chosen = {index: statistics.fmean(rec.val_auroc(r) for r in cell.records) for index, cell in results.items()}
        if any(math.isnan(value) for value in chosen.values()):
            unchosen.add(column)
        elif chosen:
            best = max(chosen.values())
            table.bold |= {(index, first + offset) for index, value in chosen.items()
                           if math.isclose(value, best, rel_tol=0.0, abs_tol=1e-9)}
    return unchosen


def _add_anchors(table: Table, grid: Grid, anchors: list[dict], several: bool, show_time: bool) -> list[dict]:
    """Rows of published figures (of this grid's metric) under a rule; returns the figures that
    match no column."""
    missed = [a for a in anchors if (a["dataset"], a["fraction"]) not in grid.columns]
    rows = list(dict.fromkeys((a["label"], a["backbone"]) for a in anchors if a not in missed))
    if rows and table.rows:
        table.rules_after.add(len(table.rows) - 1)
    for label, backbone in rows:
        values = {(a["dataset"], a["fraction"]): a["value"] for a in anchors
                  if (a["label"], a["backbone"]) == (label, backbone)}
        table.add_row(label, *([backbone] if several else []),
                      *[percent(values[c]) if c in values else "" for c in grid.columns], "",
                      *([""] if show_time else []))
    return missed


def _caption(grid: Grid, baseline: str, baselines: dict, anchored: bool, missed: list[dict],
             show_ci: bool, unchosen=frozenset()) -> list[str]:
    cells = list(grid.cells.values())
    lines = [runs_note(cells)]  # "Mean ± std over 3 seeds." (x K label subsets)
    if baselines:
        names = sorted({row[0] for row in baselines.values()})
        lines.append(f"↑/↓: difference of the mean to {' / '.join(names)}"
                     + (" of the same backbone" if len(grid.backbones) > 1 else "") + ", in percentage points.")
    else:
        lines.append(f"No baseline row {baseline!r}: no differences shown.")
    lines += _ci_lines(grid, cells) if show_ci else []
    lines.append("Bold: the best mean validation score (validation AUROC) of each column among results "
                 "(test only reports).")
    if unchosen:
        lines.append("No bold in " + ", ".join(column_title(*c) for c in grid.columns if c in unchosen)
                     + ": a result there has no validation score recorded, so no best is chosen.")
    lines += [FOOTNOTES[reason] for reason in MARKERS if any(reason in c.reasons for c in cells)]
    lines += [IMPROVING_FOOTNOTE] if any(c.still_improving for c in cells) else []
    lines += [AT_EDGE_FOOTNOTE] if any(_at_edge(c) for c in cells) else []
    if anchored:
        lines.append("Rows below the last rule: published figures as printed, not measured here and not ranked.")
    if missed:
        lines.append("Published figures without a matching column (not shown): "
                     + "; ".join(f"{a['label']} on {column_title(a['dataset'], a['fraction'])}" for a in missed) + ".")
    return lines


def _ci_lines(grid: Grid, cells) -> list[str]:
    used = {c.ci_method for c in cells}
    lines = []
    if "bootstrap" in used:
        lines.append(f"[lo, hi]: 95% CI of the seed mean, a percentile bootstrap over test items "
                     f"({grid.n_bootstrap} resamples, the same items for every seed).")
    if "run" in used:
        lines.append("[lo, hi] of a one-seed cell without saved predictions: the run's own 95% bootstrap interval.")
    if "seed-ci-mean" in used:
        lines.append("≈[lo, hi]: predictions not saved for every seed; the mean of the seeds' own 95% "
                     "intervals, an approximation of the CI of the mean.")
    if "none" in used and grid.metric == "auroc":
        lines.append("Cells without [lo, hi]: no interval available.")
    return lines
