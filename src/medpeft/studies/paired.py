"""Paired differences to the baseline row (issue 26): can a study tell a method's difference to
the baseline from noise?

Two rows' own 95% CIs (:mod:`medpeft.studies.grid`) overlapping says nothing about their
difference: both rows were scored on the same test items, so most of the item noise is shared
and cancels in the difference. :func:`paired_difference` bootstraps the difference itself. Its
input is a list of *units* per side, one per seed, or per (seed, label subset) when the study
draws several label subsets per fraction (``subsets``; with ``vary_subset`` a seed also draws
its label subset), each ``(scores, labels, task)`` of the same test items for both sides:

    Δ = 1/U Σ_u [AUROC(method_u) − AUROC(baseline_u)]   (macro AUROC, U units)

and its 95% CI is a paired percentile bootstrap over units and test items together: resample
``b`` draws U units with replacement (so seeds and label subsets are resampled too), and
within each drawn unit its N test items with replacement, the same items for both sides; Δ*_b
is the mean over the drawn units of the resampled differences. AUROC is scored from the draw
counts by :mod:`medpeft.studies.bootstrap` (the numbers of ``runtime.metrics.macro_auroc`` on
copies). The difference is *significant* when the CI excludes 0.

:func:`paired_cells` pairs a grid's cells by (seed, label subset) with the cells of the row they
are compared with: ``by="method"``, the baseline row of the same backbone (``report.baseline``,
e.g. FFT); ``by="backbone"``, the same method on the baseline backbone (``report.baseline_backbone``:
a study comparing foundation models). :func:`paired_table` is the report's table "Paired
differences to <baseline>" of either, :func:`paired_rows` its CSV (``paired-auroc.csv``,
``paired-backbones.csv``).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from ..table import Table
from .bootstrap import columns_of, weighted_macro_auroc
from .grid import Grid, GridCell, has_predictions, load_predictions, scores_the_run
from .tables import baseline_rows, column_title, delta_text

Unit = tuple  # (scores (N, K), labels (N, L), task)


@dataclass(frozen=True)
class PairedResult:
    """Δ (method − baseline, mean over units, a fraction) and its paired CI (None: no valid CI)."""
    delta: float
    ci: tuple[float, float] | None
    n_units: int

    @property
    def significant(self) -> bool:
        """The paired CI excludes 0."""
        return self.ci is not None and (self.ci[0] > 0.0 or self.ci[1] < 0.0)


def paired_difference(method_preds: list[Unit], baseline_preds: list[Unit], n_bootstrap: int = 1000,
                      seed: int = 0, level: float = 0.95) -> PairedResult:
    """Δ of macro AUROC (method − baseline) over paired units and its paired percentile CI (see
    the module doc). Resample draws come from ``numpy.random.default_rng(seed)``: the units, then
    each drawn unit's items in turn; a resample that loses a class everywhere is drawn again (at
    most 3 x ``n_bootstrap`` draws). The CI is None when fewer than half the resamples are valid
    (or ``n_bootstrap`` is 0). Raises ValueError when the sides do not pair."""
    if len(method_preds) != len(baseline_preds):
        raise ValueError(f"{len(method_preds)} method units but {len(baseline_preds)} baseline units; "
                         "pair them by seed (and label subset)")
    if not method_preds:
        raise ValueError("no units to pair")
    units = []
    for index, (method, baseline) in enumerate(zip(method_preds, baseline_preds)):
        labels, task = _check_pair(index, method, baseline)
        units.append((columns_of(np.asarray(method[0], dtype=np.float64), labels, task),
                      columns_of(np.asarray(baseline[0], dtype=np.float64), labels, task), len(labels)))
    delta = statistics.fmean(_difference(m, b, np.ones(n)) for m, b, n in units)
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(3 * n_bootstrap if not math.isnan(delta) else 0):
        if len(values) == n_bootstrap:
            break
        drawn = rng.integers(0, len(units), len(units))
        value = statistics.fmean(_difference(units[u][0], units[u][1], _draw(rng, units[u][2])) for u in drawn)
        if not math.isnan(value):
            values.append(value)
    if n_bootstrap <= 0 or len(values) < max(1, n_bootstrap // 2):
        return PairedResult(delta, None, len(units))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return PairedResult(delta, (float(low), float(high)), len(units))


def _check_pair(index: int, method: Unit, baseline: Unit) -> tuple[np.ndarray, str]:
    """The labels and task of a unit whose two sides scored the same items, else ValueError."""
    (m_scores, m_labels, m_task), (b_scores, b_labels, b_task) = method, baseline
    m_labels, b_labels = np.asarray(m_labels), np.asarray(b_labels)
    if m_task != b_task:
        raise ValueError(f"unit {index}: the method's task is {m_task!r}, the baseline's {b_task!r}")
    if m_labels.shape != b_labels.shape or not np.array_equal(m_labels, b_labels):
        raise ValueError(f"unit {index}: the method and the baseline were scored on different test items "
                         f"({len(m_labels)} and {len(b_labels)} items, labels differ); a paired difference "
                         "needs the same items in the same order")
    if np.shape(m_scores) != np.shape(b_scores) or np.shape(m_scores)[0] != len(m_labels):
        raise ValueError(f"unit {index}: scores of shape {np.shape(m_scores)} and {np.shape(b_scores)} "
                         f"for {len(m_labels)} items")
    return m_labels, m_task


def _difference(method_columns, baseline_columns, weights: np.ndarray) -> float:
    return weighted_macro_auroc(method_columns, weights) - weighted_macro_auroc(baseline_columns, weights)


def _draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)


# --- a study grid's paired differences ----------------------------------------------------------

@dataclass
class PairedCell:
    """One (row, column) against the row it is paired with: its result, or why there is none."""
    row: tuple[str, str]  # (label, backbone)
    column: tuple[str, float]  # (dataset, fraction)
    baseline: tuple[str, str]  # the row it is paired with
    result: PairedResult | None = None
    reason: str = ""  # why there is no result
    by: str = "method"  # one of PAIRINGS: what differs between the row and ``baseline``

    @property
    def against(self) -> str:
        """What the row is compared with, as the report names it: the baseline row's label
        (``by="method"``) or the baseline backbone's (``by="backbone"``)."""
        return self.baseline[0] if self.by == "method" else self.baseline[1]

    def no_cell(self) -> str:
        """The reason when the paired row has no cell in this column."""
        return (f"no {self.against} cell" if self.by == "method"
                else f"no {self.baseline[0]} cell on {self.against}")


PAIRINGS = ("method", "backbone")


def paired_cells(grid: Grid, baseline: str, n_bootstrap: int = 1000, seed: int = 0, *,
                 by: str = "method") -> list[PairedCell]:
    """Every cell of a row against the cell of its column in the row it is paired with, by unit:
    (seed, label subset), the subset None when the study draws none (AUROC grids).

    ``by="method"``: ``baseline`` is a row label or method name and each row is paired with its
    backbone's baseline row (:func:`tables.baseline_rows`); the baseline rows themselves and the
    rows of a backbone without one are left out. ``by="backbone"``: ``baseline`` is a backbone
    label and each row on another backbone is paired with the same method label on it; when that
    backbone has a single row (e.g. a model trained from scratch with its own recipe), every row
    is paired with that row; otherwise a method that backbone has no row of (it does not fit its
    family) is left out. An empty list when nothing pairs (no such row or backbone)."""
    if by not in PAIRINGS:
        raise ValueError(f"by must be one of {', '.join(PAIRINGS)}, got {by!r}")
    out = []
    bases = baseline_rows(grid, baseline) if by == "method" else {}
    own = [row for row in grid.rows if row[1] == baseline]
    for row in grid.rows:
        if by == "method":
            base = bases.get(row[1])
        else:
            base = own[0] if len(own) == 1 and row[1] != baseline else (row[0], baseline)
        if base is None or base == row or base not in grid.rows:
            continue
        for column in grid.columns:
            cell = grid.get(row, column)
            if cell is not None:
                out.append(_paired_cell(PairedCell(row, column, base, by=by), cell, grid.get(base, column),
                                        n_bootstrap, seed))
    return out


def _paired_cell(paired: PairedCell, cell: GridCell, base: GridCell | None, n_bootstrap: int,
                 seed: int) -> PairedCell:
    if base is None:
        paired.reason = paired.no_cell()
        return paired
    by_unit = {unit(r): r for r in base.records}
    pairs = [(r, by_unit[unit(r)]) for r in cell.records if unit(r) in by_unit]
    if not pairs:
        subsets = any("subset" in r for r in [*cell.records, *base.records])
        paired.reason = f"no seed{' and subset' if subsets else ''} shared with {paired.against}"
        return paired
    sides = [[load_predictions(r.get("run_dir")) for r in side] for side in zip(*pairs)]
    if any(p is None for side in sides for p in side):
        missing = [r for side, records in zip(sides, zip(*pairs)) for p, r in zip(side, records) if p is None]
        paired.reason = ("predictions not saved" if not all(has_predictions(r.get("run_dir")) for r in missing)
                         else "predictions unreadable")
        return paired
    if not all(scores_the_run(p, r) for side, records in zip(sides, zip(*pairs)) for p, r in zip(side, records)):
        paired.reason = "saved predictions do not give the runs' AUROC"
        return paired
    try:
        paired.result = paired_difference(sides[0], sides[1], n_bootstrap, seed)
    except ValueError:
        paired.reason = "different test items"
    return paired


def unit(record: dict) -> tuple[int, int | None]:
    """A record's pairing unit: (seed, label subset), the subset None when the study draws none."""
    return record["seed"], record.get("subset")


def paired_text(paired: PairedCell) -> str:
    """'↑1.2 [+0.3, +2.1]' in percentage points; 'n/a: <reason>' without a result."""
    result = paired.result
    if result is None:
        return f"n/a: {paired.reason}"
    if math.isnan(result.delta):
        return "n/a: no AUROC"
    ci = result.ci
    return delta_text(result.delta) + (" [n/a]" if ci is None else f" [{100.0 * ci[0]:+.1f}, {100.0 * ci[1]:+.1f}]")


def paired_table(grid: Grid, cells: list[PairedCell], *, n_bootstrap: int) -> Table | None:
    """The report's "Paired differences to <baseline>" table (None when nothing is paired): to
    the baseline row, or to the baseline backbone, as the cells of :func:`paired_cells` were
    paired."""
    if not cells:
        return None
    several = len(grid.backbones) > 1
    names = " / ".join(dict.fromkeys(c.against for c in cells))
    if cells[0].by == "method":
        minus = f"{names}'s"
    elif all(c.baseline[0] == c.row[0] for c in cells):
        minus = f"the same method's on {names}"
    else:  # the baseline backbone's single row
        minus = " / ".join(dict.fromkeys(f"{c.baseline[0]}'s on {c.baseline[1]}" for c in cells))
    table = Table(title=f"Paired differences to {names}: test macro AUROC (percentage points)",
                  columns=["Method"] + (["Backbone"] if several else []) + [column_title(*c) for c in grid.columns])
    rows = list(dict.fromkeys(c.row for c in cells))
    found = {(c.row, c.column): c for c in cells}
    for index, row in enumerate(rows):
        texts = []
        for offset, column in enumerate(grid.columns):
            paired = found.get((row, column))
            texts.append("–" if paired is None else paired_text(paired))
            if paired is not None and paired.result is not None and paired.result.significant:
                table.bold.add((index, 1 + several + offset))
        table.add_row(row[0], *([row[1]] if several else []), *texts)
    units = sorted({c.result.n_units for c in cells if c.result is not None}) or [0]
    subsets = any("subset" in r for cell in grid.cells.values() for r in cell.records)
    what, over, each = (("(seed, label subset) units", "seeds, label subsets", "unit") if subsets
                        else ("seeds", "seeds", "seed"))
    table.caption = "\n".join([
        f"Δ: the mean over the {what} both rows have ({units[0]}" + (f"–{units[-1]}" if len(units) > 1 else "")
        + f") of the row's test macro AUROC minus {minus} on the same test items, in percentage points.",
        (f"[lo, hi]: its paired 95% CI, a percentile bootstrap over {over} and test items "
         f"together ({n_bootstrap} resamples; each draws the {what} with replacement and, within each drawn "
         f"{each}, the test items with replacement, the same items for both rows)." if n_bootstrap > 0 else
         "[n/a]: no paired CI (no bootstrap resamples asked for)."),
        "Bold: significant — significant only when the paired 95% CI excludes 0.",
        *(["n/a: no paired difference, for the reason given."] if any(c.result is None for c in cells) else [])])
    return table


PAIRED_COLUMNS = ("row", "backbone", "column", "n_units", "delta", "ci_low", "ci_high", "significant", "reason")


def paired_rows(cells: list[PairedCell]) -> list[list]:
    """Rows of ``paired-auroc.csv`` or ``paired-backbones.csv`` (fractions, unrounded; empty
    values without a result; ``row`` the method label, ``backbone`` the row's backbone)."""
    rows = []
    for c in cells:
        result = c.result
        ci = result.ci if result is not None and result.ci is not None else (None, None)
        rows.append([c.row[0], c.row[1], column_title(*c.column), None if result is None else result.n_units,
                     None if result is None else result.delta, *ci,
                     None if result is None else result.significant, c.reason])
    return rows
