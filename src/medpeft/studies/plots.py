"""The study report's plots, drawn from a :class:`~medpeft.studies.grid.Grid` as PNG files.

- metric vs label fraction: a panel per dataset, a line per method row (log x, error bars =
  std over seeds), as MED-PEFT's and Dutt et al.'s label-efficiency figures;
- metric vs trainable parameters: a panel per dataset and fraction, a point per method row
  (log x), the accuracy-for-parameters view of Dutt et al.;
- ablations: for every variant axis with at least two values (e.g. LoRA rank, pretraining
  epochs, model size), metric vs axis value with a line per label fraction, a panel per
  method x dataset.

A cell that is not a result (see :mod:`medpeft.studies.tables`) is drawn with a hollow marker.
Matplotlib's Agg canvas via ``Figure`` (no pyplot, no display); legends sit outside the axes;
each file is written to a temporary name and renamed, so a killed run never leaves half a PNG.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .grid import Grid
from .tables import METRIC_TITLES, fraction_label

STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 10,
         "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 13}
PANEL = (4.4, 3.4)  # inches per panel
MARKERS = "osD^vP*Xh<>p"


def save_png(figure: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        figure.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _figure(n_rows: int, n_cols: int, title: str) -> tuple[Figure, list]:
    figure = Figure(figsize=(PANEL[0] * n_cols + 2.6, PANEL[1] * n_rows + 0.6), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    figure.suptitle(title)
    return figure, [axis for row in axes for axis in row]


def _row_style(grid: Grid) -> dict:
    """The same colour and marker for a method row in every plot of the report."""
    colours = matplotlib.colormaps["tab10"].colors
    return {row: {"color": colours[i % 10], "marker": MARKERS[(i // 10) % len(MARKERS)]}
            for i, row in enumerate(grid.rows)}


def _row_name(grid: Grid, row) -> str:
    return f"{row[0]} ({row[1]})" if len(grid.backbones) > 1 else row[0]


def _draw(axis, xs, cells, style: dict, label: str) -> bool:
    """One series: means with std error bars; cells that are not results hollow (returns
    whether there were any)."""
    ys = [100.0 * c.mean for c in cells]
    errors = [100.0 * (c.std or 0.0) for c in cells]
    axis.errorbar(xs, ys, yerr=errors, capsize=3, linewidth=1.6, markersize=6, label=label, **style)
    hollow = [(x, y) for x, y, c in zip(xs, ys, cells) if not c.is_result]
    if hollow:
        axis.plot(*zip(*hollow), linestyle="none", marker=style["marker"], markersize=6,
                  markerfacecolor="white", markeredgecolor=style["color"], zorder=3)
    return bool(hollow)


def _finish(figure: Figure, axes: list, used: int, hollow: bool) -> None:
    for axis in axes[used:]:
        axis.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for axis in axes[1:used]:  # a series missing from the first panel still gets its entry
        for handle, label in zip(*axis.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    legend = figure.legend(list(seen.values()), list(seen.keys()), loc="outside right center", frameon=False,
                           title="error bars: std over seeds" + ("\nhollow: not a result" if hollow else ""),
                           title_fontsize=9, alignment="left")
    legend.get_title().set_color("0.35")


def plot_fractions(grid: Grid, path: str | Path) -> Path | None:
    """Metric vs label fraction, a panel per dataset; None when no dataset has two fractions."""
    datasets = grid.datasets
    if all(len([c for c in grid.columns if c[0] == d]) < 2 for d in datasets):
        return None
    metric = METRIC_TITLES[grid.metric]
    styles = _row_style(grid)
    with matplotlib.rc_context(STYLE):
        n_cols = min(3, len(datasets))
        figure, axes = _figure(math.ceil(len(datasets) / n_cols), n_cols, f"{_cap(metric)} vs label fraction")
        hollow = False
        for axis, dataset in zip(axes, datasets):
            columns = [c for c in grid.columns if c[0] == dataset]
            for row in grid.rows:
                present = [(c[1], cell) for c in columns if (cell := grid.get(row, c)) is not None]
                if present:
                    hollow |= _draw(axis, [f for f, _ in present], [cell for _, cell in present],
                                    styles[row], _row_name(grid, row))
            axis.set_xscale("log")
            axis.set_xticks([f for _, f in columns], [fraction_label(f) for _, f in columns])
            axis.minorticks_off()
            axis.set(title=f"{dataset or 'test set'}: {metric}", xlabel="training labels used", ylabel=metric)
            axis.grid(alpha=0.3)
        _finish(figure, axes, len(datasets), hollow)
        return save_png(figure, path)


def plot_parameters(grid: Grid, path: str | Path) -> Path | None:
    """Metric vs trainable parameters, a panel per dataset x fraction, a point per method row."""
    metric = METRIC_TITLES[grid.metric]
    styles = _row_style(grid)
    n_cols = max(len([c for c in grid.columns if c[0] == d]) for d in grid.datasets)
    with matplotlib.rc_context(STYLE):
        figure, axes = _figure(len(grid.datasets), n_cols, f"{_cap(metric)} vs trainable parameters")
        hollow = False
        for d, dataset in enumerate(grid.datasets):
            for f, column in enumerate([c for c in grid.columns if c[0] == dataset]):
                axis = axes[d * n_cols + f]
                for row in grid.rows:
                    cell = grid.get(row, column)
                    if cell is not None and all(r["metrics"].get("trainable_params") for r in cell.records):
                        params = sum(r["metrics"]["trainable_params"] for r in cell.records) / len(cell.records)
                        hollow |= _draw(axis, [params], [cell], styles[row], _row_name(grid, row))
                axis.set_xscale("log")
                axis.set(title=f"{dataset or 'test set'}, {fraction_label(column[1])} labels: {metric}",
                         xlabel="trainable parameters", ylabel=metric)
                axis.grid(alpha=0.3)
            for axis in axes[d * n_cols + len([c for c in grid.columns if c[0] == dataset]):(d + 1) * n_cols]:
                axis.set_visible(False)
        _finish(figure, axes, len(axes), hollow)
        return save_png(figure, path)


def variant_axes(grid: Grid) -> list[str]:
    """Variant keys (first-seen order) that take at least two values within one method."""
    keys = list(dict.fromkeys(k for c in grid.cells.values() for k in c.variant))
    return [k for k in keys if _ablation_groups(grid, k)]


def _ablation_groups(grid: Grid, key: str) -> list[tuple[str, str]]:
    """(method, backbone) pairs whose cells take at least two values of variant ``key``."""
    values: dict[tuple[str, str], set] = {}
    for (row, _), cell in grid.cells.items():
        if key in cell.variant:
            values.setdefault((cell.method, row[1]), set()).add(repr(cell.variant[key]))
    return [group for group, seen in values.items() if len(seen) > 1]


def plot_ablation(grid: Grid, key: str, path: str | Path) -> Path | None:
    """Metric vs the value of variant ``key``, a line per label fraction (and per value of the
    other variant keys when they vary), a panel per method x dataset."""
    groups = _ablation_groups(grid, key)
    if not groups:
        return None
    metric = METRIC_TITLES[grid.metric]
    panels = [(group, dataset) for group in groups for dataset in grid.datasets
              if any(c.method == group[0] and r[1] == group[1] and col[0] == dataset and key in c.variant
                     for (r, col), c in grid.cells.items())]
    colours = matplotlib.colormaps["viridis"]
    fractions = sorted({fraction for _, fraction in grid.columns})  # one colour per fraction in every panel
    with matplotlib.rc_context(STYLE):
        n_cols = min(3, len(panels))
        figure, axes = _figure(math.ceil(len(panels) / n_cols), n_cols, f"{_cap(metric)} vs {key}")
        hollow = False
        for axis, ((method, backbone), dataset) in zip(axes, panels):
            lines = _ablation_lines(grid, key, method, backbone, dataset)
            positions, labels = _axis_positions([v for points in lines.values() for v, _ in points])
            kinds = list(dict.fromkeys(others for _, others in lines))
            for (fraction, others), points in lines.items():
                share = fractions.index(fraction) / max(1, len(fractions) - 1)
                style = {"color": colours(0.1 + 0.75 * share), "marker": MARKERS[kinds.index(others) % len(MARKERS)]}
                points.sort(key=lambda p: positions[repr(p[0])])
                hollow |= _draw(axis, [positions[repr(v)] for v, _ in points], [c for _, c in points], style,
                                f"{fraction_label(fraction)} labels" + (f", {others}" if others else ""))
            if labels is not None:
                axis.set_xticks(range(len(labels)), labels)
            else:
                ticks = sorted(set(positions.values()))
                if _log_scale(ticks):
                    axis.set_xscale("log")
                    axis.minorticks_off()
                if len(ticks) <= 12:
                    axis.set_xticks(ticks, [f"{v:g}" for v in ticks])
            backbone_note = f" ({backbone})" if len(grid.backbones) > 1 else ""
            axis.set(title=f"{method}{backbone_note} on {dataset or 'test set'}: {metric}", xlabel=key, ylabel=metric)
            axis.grid(alpha=0.3)
        _finish(figure, axes, len(panels), hollow)
        return save_png(figure, path)


def _ablation_lines(grid: Grid, key: str, method: str, backbone: str, dataset: str) -> dict:
    """(fraction, the other variant values as text) -> [(value of ``key``, cell)]."""
    lines: dict[tuple[float, str], list] = {}
    for (row, column), cell in grid.cells.items():
        if cell.method == method and row[1] == backbone and column[0] == dataset and key in cell.variant:
            others = ", ".join(f"{k}={v}" for k, v in sorted(cell.variant.items()) if k != key)
            lines.setdefault((column[1], others), []).append((cell.variant[key], cell))
    return dict(sorted(lines.items()))


def _axis_positions(values: list) -> tuple[dict, list[str] | None]:
    """Numbers stand at their value; anything else (e.g. 'small', 'base') at 0, 1, 2, ... in
    first-seen order, with the values as tick labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {repr(v): float(v) for v in values}, None
    order = list(dict.fromkeys(repr(v) for v in values))
    names = {repr(v): str(v) for v in values}
    return {r: float(i) for i, r in enumerate(order)}, [names[r] for r in order]


def _log_scale(values: list[float]) -> bool:
    """A positive axis spanning a factor of 4 or more (ranks 4..16) reads better on log scale."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 4


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def plot_file_name(metric: str, kind: str) -> str:
    """'auroc-vs-fraction.png', 'f1-ablation-rank.png'; user text reduced to a safe name."""
    return f"{metric}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', kind).strip('-.') or 'axis'}.png"


def plot_grid(grid: Grid, out_dir: str | Path) -> list[tuple[Path, str]]:
    """Every plot of one metric's grid into ``out_dir``: (path, caption) of each file written."""
    out_dir = Path(out_dir)
    metric = _cap(METRIC_TITLES[grid.metric])
    plots = [(plot_fractions(grid, out_dir / plot_file_name(grid.metric, "vs-fraction")),
              f"{metric} vs label fraction"),
             (plot_parameters(grid, out_dir / plot_file_name(grid.metric, "vs-trainable-params")),
              f"{metric} vs trainable parameters")]
    names = set()
    for index, key in enumerate(variant_axes(grid)):
        name = plot_file_name(grid.metric, f"ablation-{key}")
        name = name if name not in names else name.replace(".png", f"-{index}.png")  # 'a b' and 'a-b'
        names.add(name)
        plots.append((plot_ablation(grid, key, out_dir / name), f"{metric} vs {key} (ablation)"))
    return [(path, caption) for path, caption in plots if path is not None]
