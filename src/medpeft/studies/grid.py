"""A study's results as a grid: rows (method label x backbone) by columns (dataset x label
fraction), one :class:`GridCell` per pair holding that cell's seeds (and, when the study draws
several label subsets per fraction, every seed x subset run: the mean, std and CI are over all of
them, the CI's items being the same for every run; :func:`runs_note` says which).

A cell's 95% confidence interval is of the seed-averaged AUROC. When every seed saved its test
predictions (``predictions-test.npz``: ``scores`` (N, K), ``labels`` (N, L), same item order
for every seed), it is a percentile bootstrap over test items, each resample drawing the same
items for all seeds, so it holds the item noise of the mean and not the seed noise (the ± std
shows that); predictions whose AUROC is not the one the run reported (a stale file) are not
used. Otherwise it is read off the runs' own intervals (``auroc_ci95``): the run's
interval for one seed, the mean of the seeds' bounds for several (an approximation: wider than
the interval of the mean). ``GridCell.ci_method`` says which. A predictions file that cannot be
read (truncated, corrupt, not the arrays it should hold) is treated as a run without saved
predictions, as when its run folder was deleted: the interval falls back to the runs' own, and an
:class:`UnreadablePredictions` warning names the file (``runner.report_study`` prints it).
"""
from __future__ import annotations

import math
import statistics
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import records as rec
from .bootstrap import bootstrap_seed_mean, columns_of, weighted_macro_auroc

PREDICTIONS = "predictions-test.npz"
CI_METHODS = ("bootstrap", "run", "seed-ci-mean", "none")
# what reading a damaged predictions file raises (a truncated zip, a bad array header, a missing array)
UNREADABLE = (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, KeyError)


class UnreadablePredictions(UserWarning):
    """A run's ``predictions-test.npz`` exists but cannot be read; the report goes on without it."""

RowKey = tuple[str, str]  # (label, backbone)
ColumnKey = tuple[str, float]  # (dataset, fraction)


@dataclass
class GridCell:
    metric: str
    records: list[dict]  # one per seed (x label subset), by seed then subset
    ci: tuple[float, float] | None = None  # 95% CI of the seed mean (fractions), AUROC only
    ci_method: str = "none"  # one of CI_METHODS

    @property
    def values(self) -> list[float]:
        return [rec.METRIC_OF[self.metric](r) for r in self.records]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the runs: seeds (x subsets) (None for one run)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def n_seeds(self) -> int:
        return len({r["seed"] for r in self.records})

    @property
    def n_subsets(self) -> int:
        """Label subsets of the cell (1 when the study draws none)."""
        return len({r.get("subset") for r in self.records})

    @property
    def reasons(self) -> list[str]:
        """Why the cell is not a result ("steps", "one_class"); empty when it is one."""
        return sorted({reason for r in self.records for reason in rec.not_a_result(r)})

    @property
    def still_improving(self) -> bool:
        """A seed's best validation was at its last epoch (it might have improved further)."""
        return any(rec.still_improving(r) for r in self.records)

    @property
    def is_result(self) -> bool:
        return not self.reasons and not math.isnan(self.mean)

    @property
    def method(self) -> str:
        return self.records[0]["method"]

    @property
    def variant(self) -> dict:
        return self.records[0].get("variant") or {}


@dataclass
class Grid:
    metric: str
    rows: list[RowKey]
    columns: list[ColumnKey]
    cells: dict[tuple[RowKey, ColumnKey], GridCell] = field(default_factory=dict)
    n_bootstrap: int = 0

    def get(self, row: RowKey, column: ColumnKey) -> GridCell | None:
        return self.cells.get((row, column))

    @property
    def backbones(self) -> list[str]:
        return list(dict.fromkeys(backbone for _, backbone in self.rows))

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(dataset for dataset, _ in self.columns))

    def method_of(self, row: RowKey) -> str:
        return next(cell.method for (r, _), cell in self.cells.items() if r == row)

    def row_cells(self, row: RowKey) -> list[GridCell]:
        return [cell for (r, _), cell in self.cells.items() if r == row]


def build_grid(records: list[dict], metric: str, *, rows=None, n_bootstrap: int = 1000,
               bootstrap_seed: int = 0) -> Grid:
    """The grid of ``metric`` ("auroc" or "f1"). Rows follow ``rows`` (labels; unlisted labels
    follow in first-seen order, listed labels without records are left out), grouped by
    backbone; columns are datasets in first-seen order, each with its fractions ascending."""
    if metric not in rec.METRICS:
        raise ValueError(f"metric must be one of {', '.join(rec.METRICS)}, got {metric!r}")
    rec.check_records(records)
    _check_labels(records)
    groups: dict[tuple[RowKey, ColumnKey], list[dict]] = {}
    for record in records:
        key = ((record["label"], record["backbone"]), (record["dataset"], float(record["fraction"])))
        groups.setdefault(key, []).append(record)
    grid = Grid(metric, _row_order(records, rows), _column_order(records),
                n_bootstrap=n_bootstrap if metric == "auroc" else 0)
    for key, members in groups.items():
        members = sorted(members, key=lambda r: (r["seed"], r.get("subset", -1)))
        cell = GridCell(metric, members)
        if metric == "auroc":
            cell.ci, cell.ci_method = seed_mean_ci(members, n_bootstrap, bootstrap_seed)
        grid.cells[key] = cell
    return grid


def runs_note(cells: list[GridCell]) -> str:
    """The tables' first note: what a cell's mean and std are over ("Mean ± std over 3 seeds.";
    "Mean ± std over 3 seeds x 10 label subsets ..." when the study draws subsets)."""
    runs = sorted({len(c.records) for c in cells}) or [0]
    if not any("subset" in r for c in cells for r in c.records):
        return ("Mean ± std over " + (f"{runs[0]} seeds" if len(runs) == 1 else f"{runs[0]}–{runs[-1]} seeds "
                                       "(no ± for a single seed)") if runs[-1] > 1 else "One seed per cell") + "."
    seeds, subsets = (sorted({getattr(c, name) for c in cells}) for name in ("n_seeds", "n_subsets"))
    return (f"Mean ± std over {_span(seeds)} seeds x {_span(subsets)} label subsets (every seed trained on every "
            "subset; each subset its own seeded draw of the fraction's labels)"
            + (" (no ± for a single run)" if runs[0] == 1 else "") + ".")


def _span(values: list[int]) -> str:
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _check_labels(records: list[dict]) -> None:
    """A row (label x backbone) is one method and one variant (else two things share a row)."""
    first: dict[RowKey, dict] = {}
    for record in records:
        seen = first.setdefault((record["label"], record["backbone"]), record)
        if seen["method"] != record["method"] or (seen.get("variant") or {}) != (record.get("variant") or {}):
            raise ValueError(f"label {record['label']!r} is used for method {seen['method']!r} "
                             f"{seen.get('variant') or {}} and {record['method']!r} {record.get('variant') or {}}; "
                             "give each method variant its own label")


def _row_order(records: list[dict], rows) -> list[RowKey]:
    labels = list(dict.fromkeys(r["label"] for r in records))
    order = [label for label in (rows or ()) if label in labels] + [
        label for label in labels if label not in (rows or ())]
    backbones = list(dict.fromkeys(r["backbone"] for r in records))
    present = {(r["label"], r["backbone"]) for r in records}
    return [(label, backbone) for backbone in backbones for label in order if (label, backbone) in present]


def _column_order(records: list[dict]) -> list[ColumnKey]:
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    return [(dataset, fraction) for dataset in datasets
            for fraction in sorted({float(r["fraction"]) for r in records if r["dataset"] == dataset})]


def seed_mean_ci(records: list[dict], n_bootstrap: int = 1000, seed: int = 0):
    """(95% CI of the seed-mean test AUROC or None, the method used: see the module doc)."""
    predictions = [load_predictions(r.get("run_dir")) for r in records]
    if (n_bootstrap > 0 and all(p is not None for p in predictions) and _same_items(predictions)
            and all(scores_the_run(p, r) for p, r in zip(predictions, records))):
        ci = bootstrap_seed_mean([p[0] for p in predictions], predictions[0][1], predictions[0][2],
                                 n_bootstrap, seed)
        if ci is not None:
            return ci, "bootstrap"
    intervals = [rec.auroc_ci95(r) for r in records]
    if not intervals or any(ci is None for ci in intervals):
        return None, "none"
    lows, highs = zip(*intervals)
    return (statistics.fmean(lows), statistics.fmean(highs)), "run" if len(intervals) == 1 else "seed-ci-mean"


def has_predictions(run_dir) -> bool:
    """The run folder holds a ``predictions-test.npz`` (readable or not)."""
    return bool(run_dir) and (Path(run_dir) / PREDICTIONS).is_file()


def load_predictions(run_dir) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(scores (N, K), labels (N, L), task) from a run's ``predictions-test.npz``, or None: no
    file, or one that cannot be read (then an :class:`UnreadablePredictions` warning names it)."""
    if not has_predictions(run_dir):
        return None
    path = Path(run_dir) / PREDICTIONS
    try:
        with open(path, "rb") as file, _npz(np.load(file, allow_pickle=False)) as npz:
            scores = np.asarray(npz["scores"], dtype=np.float64)
            labels = np.asarray(npz["labels"], dtype=np.int64).reshape(len(npz["labels"]), -1)
            if scores.ndim != 2 or len(scores) != len(labels):
                raise ValueError(f"scores of shape {scores.shape} for {len(labels)} labels")
            task = str(npz["task"]) if "task" in npz.files else infer_task(scores, labels)
    except UNREADABLE as err:
        warnings.warn(f"{path}: unreadable test predictions ({type(err).__name__}: {err}); its cell's 95% CI "
                      "falls back to the runs' own intervals, as for a run without saved predictions",
                      UnreadablePredictions, stacklevel=2)
        return None
    return scores, labels, task


def _npz(loaded):
    """``np.load``'s answer when it is an archive (a lone ``.npy`` array is not predictions)."""
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"a single {type(loaded).__name__}, not an .npz archive of scores and labels")
    return loaded


def infer_task(scores: np.ndarray, labels: np.ndarray) -> str:
    """binary: one score column; multiclass: K scores, one label column; multilabel: K and K."""
    k, l = scores.shape[1], labels.shape[1]
    if k == 1:
        return "binary"
    if l == 1:
        return "multiclass"
    if l == k:
        return "multilabel"
    raise ValueError(f"predictions with {k} score columns and {l} label columns fit no task; "
                     "save a 'task' entry in predictions-test.npz")


def scores_the_run(prediction, record: dict, tolerance: float = 1e-4) -> bool:
    """The saved predictions give the AUROC the run reported (not a stale file of another run)."""
    scores, labels, task = prediction
    reported = rec.auroc(record)
    return math.isnan(reported) or abs(weighted_macro_auroc(columns_of(scores, labels, task),
                                                             np.ones(len(labels))) - reported) <= tolerance


def _same_items(predictions) -> bool:
    """Every seed scored the same test items in the same order (same labels, same task)."""
    _, labels, task = predictions[0]
    return all(p[2] == task and p[1].shape == labels.shape and np.array_equal(p[1], labels)
               and p[0].shape[0] == len(labels) for p in predictions)
