"""Study reports (issue 11): pure functions from a study's result records to files.

The engine hands over one record per finished run (see :mod:`medpeft.studies.records`);
:func:`write_report` writes, into one folder:

- ``report.md``: the paper tables (test macro AUROC and macro-F1, MED-PEFT Table 1 style, see
  :mod:`medpeft.studies.tables`), the exact command, links to the plots;
- ``report.html``: the same, self-contained (inline CSS, plots as data URIs), opens offline;
- ``results.csv``: one row per run; ``cells.csv``: one row per table cell and metric;
- ``table-auroc.csv``, ``table-f1.csv``: the tables as shown;
- ``paired-auroc.csv``: every row's paired difference of test AUROC to the baseline row, with its
  paired 95% CI (:mod:`medpeft.studies.paired`), also a table of ``report.md`` (when there is a
  baseline row and another row);
- ``paired-backbones.csv``: with a baseline backbone (``report.baseline_backbone``), every row's
  paired difference to the same method on that backbone, also a table of ``report.md``;
- the PNG plots of :mod:`medpeft.studies.plots`.

Numbers are computed once, from the records, and every file renders the same
:class:`~medpeft.table.Table` or :class:`~medpeft.studies.grid.Grid`, so they cannot disagree.
Every file is written atomically. The report can be rewritten at any time from the records,
so a half-finished study gets a report of the runs done so far.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..serialization import atomic_write_text
from ..table import Table
from . import records as rec
from .grid import Grid, build_grid
from .html import page_html
from .paired import PAIRED_COLUMNS, paired_cells, paired_rows, paired_table
from .plots import plot_grid
from .tables import METRIC_TITLES, study_table

TABLE_FILES = {"auroc": "table-auroc.csv", "f1": "table-f1.csv"}
PAIRED_FILE = "paired-auroc.csv"
PAIRED_BACKBONES_FILE = "paired-backbones.csv"


@dataclass
class ReportFiles:
    """The files :func:`write_report` wrote."""
    markdown: Path
    html: Path
    results_csv: Path
    cells_csv: Path
    tables: dict[str, Path] = field(default_factory=dict)  # metric -> table-<metric>.csv
    plots: list[Path] = field(default_factory=list)
    paired: Path | None = None  # paired-auroc.csv (None: no baseline row and other row to pair)
    paired_backbones: Path | None = None  # paired-backbones.csv (None: no baseline backbone, or nothing pairs)

    def all(self) -> list[Path]:
        return [self.markdown, self.html, self.results_csv, self.cells_csv, *self.tables.values(),
                *(path for path in (self.paired, self.paired_backbones) if path), *self.plots]


def report_grids(records: list[dict], *, rows=None, n_bootstrap: int = 1000,
                 bootstrap_seed: int = 0) -> dict[str, Grid]:
    """metric ("auroc", "f1") -> its grid of cells (the AUROC cells with their 95% CIs)."""
    if not records:
        raise ValueError("no finished runs to report; run the study first")
    return {metric: build_grid(records, metric, rows=rows, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed)
            for metric in rec.METRICS}


def metric_title(metric: str, records: list[dict], title: str = "") -> str:
    """'<title>: test macro AUROC (%)'; for F1 it says at which threshold."""
    name = METRIC_TITLES[metric]
    if metric == "f1":
        at_val = {rec.f1_at_val_threshold(r) for r in records}
        name += (" at the per-label threshold chosen on validation" if at_val == {True} else
                 " at threshold 0.5 (argmax for multiclass)" if at_val == {False} else
                 " at the validation threshold where the run has one, else 0.5")
    return f"{title}: {name}" if title else name[:1].upper() + name[1:]


def report_tables(records: list[dict], *, title: str = "", baseline: str = "fft", rows=None, anchors=(),
                  n_bootstrap: int = 1000, bootstrap_seed: int = 0, grids: dict | None = None) -> dict[str, Table]:
    """metric -> the paper table of that metric (what ``medpeft study report`` prints)."""
    grids = grids or report_grids(records, rows=rows, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed)
    return {metric: study_table(grid, title=metric_title(metric, records, title), baseline=baseline, anchors=anchors)
            for metric, grid in grids.items()}


RESULT_COLUMNS = ("dataset", "fraction", "label", "method", "backbone", "seed")
METRIC_COLUMNS = ("auroc", "auroc_ci95_lo", "auroc_ci95_hi", "f1", "f1_threshold", "acc", "val_auroc",
                  "one_class", "steps", "not_a_result", "best_epoch", "epochs_run", "trainable_params",
                  "total_params", "train_size", "wall_time_s", "threads", "interop_threads", "run_dir")


def results_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of ``results.csv``: one row per run, a column per variant key (named
    ``variant_<key>`` when the key is also a fixed column) and per searched parameter
    (``searched_<name>``: the configuration a search chose), a ``subset`` column after ``seed``
    when the study draws label subsets, floats written exactly."""
    keys = list(dict.fromkeys(k for r in records for k in (r.get("variant") or {})))
    searched = list(dict.fromkeys(k for r in records for k in (r.get("params") or {})))
    subsets = ["subset"] if any("subset" in r for r in records) else []  # the study draws label subsets
    fixed = set(RESULT_COLUMNS) | set(METRIC_COLUMNS) | set(subsets)
    columns = [*RESULT_COLUMNS, *subsets, *(f"variant_{k}" if k in fixed else k for k in keys),
               *(f"searched_{k}" for k in searched), *METRIC_COLUMNS]
    rows = []
    for r in records:
        metrics, ci = r["metrics"], rec.auroc_ci95(r)
        values = [r["dataset"], r["fraction"], r["label"], r["method"], r["backbone"], r["seed"],
                  *(r.get(k) for k in subsets), *((r.get("variant") or {}).get(k) for k in keys),
                  *((r.get("params") or {}).get(k) for k in searched),
                  rec.auroc(r), ci[0] if ci else None, ci[1] if ci else None, rec.f1(r),
                  "val" if rec.f1_at_val_threshold(r) else "0.5", rec.acc(r),
                  metrics.get("val", {}).get("auroc"), rec.one_class(r), rec.steps(r),
                  " ".join(rec.not_a_result(r)), metrics.get("best_epoch"), metrics.get("epochs_run"),
                  metrics.get("trainable_params"), metrics.get("total_params"), metrics.get("train_size"),
                  metrics.get("wall_time_s"), *rec.threads(r), r.get("run_dir")]
        rows.append([_csv_value(v) for v in values])
    return columns, rows


CELL_COLUMNS = ("metric", "dataset", "fraction", "label", "backbone", "method", "seeds", "mean", "std",
                "ci95_lo", "ci95_hi", "ci_method", "not_a_result")


def cells_rows(grids: dict[str, Grid]) -> list[list[str]]:
    """Rows of ``cells.csv``: every table cell's numbers, unrounded (fractions)."""
    rows = []
    for metric, grid in grids.items():
        for row in grid.rows:
            for column in grid.columns:
                cell = grid.get(row, column)
                if cell is not None:
                    values = [metric, column[0], column[1], row[0], row[1], cell.method, len(cell.records),
                              cell.mean, cell.std, *(cell.ci or (None, None)), cell.ci_method,
                              " ".join(cell.reasons)]
                    rows.append([_csv_value(v) for v in values])
    return rows


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(records: list[dict], out_dir: str | Path, *, title: str, command: str, baseline: str = "fft",
                 rows=None, anchors=(), note: str = "", n_bootstrap: int = 1000,
                 bootstrap_seed: int = 0, baseline_backbone: str | None = None) -> ReportFiles:
    """Write the study report of ``records`` into ``out_dir`` (see the module doc).

    ``baseline``: the label, else the method, of the row the differences (↑/↓, and the paired
    differences with their CIs) are taken to; ``baseline_backbone``: a backbone label, whose
    rows every other backbone's same method is paired with (None: no such table);
    ``rows``: row labels in the order to show (others follow in first-seen order); ``anchors``:
    published figures ``{"label", "dataset", "fraction", "metric", "value"}`` shown as their own
    rows; ``n_bootstrap``: resamples for the CI of the seed mean (0: use the runs' own CIs) and
    for the paired CIs (0: none).
    """
    out = Path(out_dir)
    anchors = rec.check_anchors(anchors)
    grids = report_grids(records, rows=rows, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed)
    tables = report_tables(records, title=title, baseline=baseline, anchors=anchors, grids=grids)
    files = ReportFiles(out / "report.md", out / "report.html", out / "results.csv", out / "cells.csv")
    atomic_write_text(files.results_csv, _csv_text(*results_rows(records)))
    atomic_write_text(files.cells_csv, _csv_text(CELL_COLUMNS, cells_rows(grids)))
    for metric, table in tables.items():
        files.tables[metric] = out / TABLE_FILES[metric]
        atomic_write_text(files.tables[metric], table.to_csv())
    shown = [*tables.values()]
    pairings = [("paired", "method", baseline, PAIRED_FILE)]
    if baseline_backbone is not None:
        pairings.append(("paired_backbones", "backbone", baseline_backbone, PAIRED_BACKBONES_FILE))
    for attribute, by, against, name in pairings:
        paired = paired_cells(grids["auroc"], against, n_bootstrap, bootstrap_seed, by=by)
        if (table := paired_table(grids["auroc"], paired, n_bootstrap=n_bootstrap)) is not None:
            shown.append(table)
            setattr(files, attribute, out / name)
            atomic_write_text(out / name, _csv_text(PAIRED_COLUMNS, [[_csv_value(v) for v in row]
                                                                     for row in paired_rows(paired)]))
    plots = [plot for grid in grids.values() for plot in plot_grid(grid, out)]
    files.plots = [path for path, _ in plots]
    others = [p.name for p in files.all() if p not in (files.markdown, files.html) and p.suffix == ".csv"]
    atomic_write_text(files.markdown, report_markdown(title, command=command, note=note,
                                                      tables=shown, plots=plots, files=others))
    atomic_write_text(files.html, page_html(title, command=command, note=note, tables=shown,
                                            images=plots, files=others))
    return files


def report_markdown(title: str, *, command: str, note: str = "", tables=(), plots=(), files=()) -> str:
    """``report.md``: title, note, the command in a code block, the tables, image links."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", command)), default=0))
    parts = [f"# {title}", note, f"Made by:\n\n{fence}\n{command}\n{fence}", "## Tables",
             *(table.to_markdown() for table in tables)]
    if plots:
        parts += ["## Plots", *(f"![{_md_alt(caption)}]({path.name})" for path, caption in plots)]
    if files:
        parts.append("Files beside this report: " + ", ".join(f"`{name}`" for name in files) + ".")
    return "\n\n".join(part.rstrip("\n") for part in parts if part) + "\n"


def _md_alt(text: str) -> str:
    return re.sub(r"[\[\]\n]", " ", text)
