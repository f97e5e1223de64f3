"""The generative table of a diffusion study: FD, precision, recall and conditional accuracy per
method (rows) and training-set fraction (columns), mean ± std over seeds, with the base model
without adaptation and the real-vs-real floor as rows of their own; plus trainable share and
time per cell. Written as ``report.md``, ``results.csv`` (one row per run) and the sample grids
of the first seed (``grids/``).
"""
from __future__ import annotations

import csv
import io
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..serialization import atomic_write_text
from ..table import Table
from .generative import NO_ADAPTATION

FLOOR = "Real vs real (floor)"
METRICS = {  # key -> (title, lower is better, scale, format)
    "fd": ("Fréchet distance in the judge's feature space (lower is better)", True, 1.0, "{:.2f}"),
    "precision": ("Precision, Kynkäänniemi et al., k = 3 (%, higher is better)", False, 100.0, "{:.1f}"),
    "recall": ("Recall, Kynkäänniemi et al., k = 3 (%, higher is better)", False, 100.0, "{:.1f}"),
    "cond_acc": ("Conditional accuracy: the judge reads what the prompt asks (balanced, %, higher is better)",
                 False, 100.0, "{:.1f}"),
}


def _mean_std(values: list[float], scale: float, fmt: str) -> str:
    if not values:
        return ""
    values = np.asarray(values) * scale
    text = fmt.format(values.mean())
    return text + (f" ± {fmt.format(values.std(ddof=1))}" if len(values) > 1 else "")


def metric_table(records: list[dict], key: str, rows: list[str], fractions: list[float], dataset: str) -> Table:
    title, lower, scale, fmt = METRICS[key]
    columns = ["Method"] + [f"{dataset} {f:.0%}" for f in fractions] + ["Trainable", "Time / cell (s)"]
    table = Table(title, columns)
    cells = defaultdict(list)
    for r in records:
        cells[(r["label"], r["fraction"])].append(r)
    means = {}
    for row in rows:
        texts = []
        for col, fraction in enumerate(fractions):
            found = cells.get((row, 0.0 if row == NO_ADAPTATION else fraction), [])
            values = [r["metrics"]["scores"]["generated"][key] for r in found]
            texts.append(_mean_std(values, scale, fmt))
            if values:
                means[(len(table.rows), col + 1)] = np.mean(values)
        own = [r for r in records if r["label"] == row]
        share = own[0]["metrics"]["trainable_pct"] if own and row != NO_ADAPTATION else 0.0
        seconds = [r["metrics"]["wall_time_s"] + r["metrics"].get("sample_wall_time_s", 0.0) for r in own]
        table.add_row(row, *texts, f"{share:.3g}%" if own else "", f"{np.mean(seconds):.0f}" if seconds else "")
    for col in range(1, len(fractions) + 1):
        column = {k: v for k, v in means.items() if k[1] == col}
        if column:
            best = (min if lower else max)(column, key=column.get)
            table.bold.add(best)
    floor = [r["metrics"]["scores"]["real"][key] for r in records]
    table.add_row(FLOOR, *([_mean_std(floor[:1], scale, fmt)] * len(fractions)), "", "")
    table.rules_after.add(len(table.rows) - 2)
    return table


def results_csv(records: list[dict]) -> str:
    out = io.StringIO()
    fields = ["dataset", "fraction", "label", "method", "seed", "fd", "precision", "recall", "cond_acc",
              "real_fd", "real_precision", "real_recall", "real_cond_acc", "n", "trainable_params", "total_params",
              "trainable_pct", "steps", "train_size", "wall_time_s", "sample_wall_time_s", "run_dir"]
    writer = csv.DictWriter(out, fields)
    writer.writeheader()
    for r in records:
        m = r["metrics"]
        gen, real = m["scores"]["generated"], m["scores"]["real"]
        writer.writerow({**{k: r[k] for k in ("dataset", "fraction", "label", "method", "seed", "run_dir")},
                         **{k: gen[k] for k in ("fd", "precision", "recall", "cond_acc", "n")},
                         **{f"real_{k}": real[k] for k in ("fd", "precision", "recall", "cond_acc")},
                         **{k: m.get(k) for k in ("trainable_params", "total_params", "trainable_pct", "steps",
                                                  "train_size", "wall_time_s", "sample_wall_time_s")}})
    return out.getvalue()


def copy_grids(records: list[dict], folder: Path, seed: int) -> list[tuple[str, float, list[Path]]]:
    """The sample grids of one seed's runs, copied to ``folder``: (label, fraction, [png])."""
    out = []
    for r in records:
        if r["seed"] != seed:
            continue
        copied = []
        for grid in r["metrics"].get("grids", []):
            source = Path(r["run_dir"]) / grid
            if source.is_file():
                target = folder / f"{Path(r['run_dir']).name.rsplit('-', 1)[0]}-{source.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
                copied.append(target)
        out.append((r["label"], r["fraction"], copied))
    return out


def write_diffusion_report(records: list[dict], out: Path, *, title: str, rows: list[str], fractions: list[float],
                           dataset: str, command: str, note: str, extra: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    tables = {key: metric_table(records, key, rows, fractions, dataset) for key in METRICS}
    grids = copy_grids(records, out / "grids", min((r["seed"] for r in records), default=0))
    lines = [f"# {title}", "", f"Made by: `{command}`", "", note, ""]
    if extra:
        lines += [extra, ""]
    for table in tables.values():
        lines += [table.to_markdown(), ""]
    lines += ["## Sample grids (first seed)", ""]
    for label, fraction, paths in grids:
        for path in paths:
            lines.append(f"- {label}, {fraction:.0%}: ![{path.stem}](grids/{path.name})")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "results.csv", results_csv(records))
    return [out / "report.md", out / "results.csv"]


def report_diffusion_study(path, *, storage: str | None = None, work_dir=None, out=None, console=None,
                           fmt: str = "table", command: str | None = None, title: str | None = None) -> list[Path]:
    """Write the generative table of a diffusion study's finished cells and print its tables
    (``medpeft study report`` of a diffusion study, through ``studies/runner.py`` ``report_study``)."""
    from ..console import make_console
    from ..models.cache import checkpoint_dir
    from .generative import DiffusionEngine, judge_dir, load_diffusion_study
    from .kinds import work_dir_of

    console = console or make_console()
    study = load_diffusion_study(path)
    work = work_dir_of(path, work_dir)
    engine = DiffusionEngine(study, work, storage, console=console)
    records, status = engine.records(), engine.progress()
    rows = ([NO_ADAPTATION] if study.no_adaptation else []) + [m.label or m.name for m in study.methods]
    dataset = study.data.label or study.data.spec
    cells_time = sum(r["metrics"]["wall_time_s"] + r["metrics"].get("sample_wall_time_s", 0.0) for r in records)
    steps = _made_in(checkpoint_dir(study.base.name), "base model", study.base.name)
    steps += _made_in(judge_dir(study, work), "judge", "classifier on real images")
    note = (f"{status.done} of {status.total} cells finished" if status.done < status.total else
            f"all {status.total} cells finished") + (f"; seeds {', '.join(map(str, study.seeds))}; cells "
                                                     f"{cells_time / 60:.1f} min of training and sampling")
    title = title or (f"{study.name}: {study.description}" if study.description else study.name)
    files = write_diffusion_report(records, Path(out) if out else work / "report", title=title, rows=rows,
                                   fractions=list(study.fractions), dataset=dataset,
                                   command=command or f"medpeft study run {path}", note=note,
                                   extra="\n".join(steps))
    for key in METRICS:
        metric_table(records, key, rows, list(study.fractions), dataset).print(console, fmt)
    if fmt == "table":
        console.print(f"report: {files[0]} ({note})")
    return files


def _made_in(folder: Path, what: str, name: str) -> list[str]:
    from ..runtime import RunDir

    run = RunDir(folder)
    if not run.is_complete():
        return []
    metrics = run.load_metrics()
    extra = f", test AUROC {metrics['test']['auroc']:.3f}" if "test" in metrics else ""
    return [f"- {what} ({name}): {metrics.get('wall_time_s', 0):.0f} s{extra}"]
