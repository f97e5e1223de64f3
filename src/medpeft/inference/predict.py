"""Predicting with a finished run on image files: ``medpeft predict RUN FILES... --out predictions.csv``.

Images are decoded as training decodes them (:func:`medpeft.data.decode.read_image`: PNG, JPEG,
DICOM, the same pixel limit) and put through the run's evaluation transform (its backbone's size
and statistics), so a PNG of a test image gets the probability ``medpeft eval`` computed for it.
Decisions use the run's validation thresholds (:class:`RunOutputs`). Folders are searched
recursively for image files by suffix, and for suffix-less files (DICOM exports often have
none). Every input left out is listed with the reason — a file that cannot be read, a file of
another suffix, a hidden file or folder, a dangling symbolic link — and the batch goes on.
``--out`` is a CSV file written atomically: a folder there is refused before any work, and a
write that fails leaves no temporary file.

Why here and not in ``serve``: this is scoring a saved run on new data, what ``eval`` does on a
split; ``serve`` builds on it (same :class:`RunPredictor` steps, same :class:`RunOutputs`), and
``medpeft predict`` needs none of the web server's dependencies.
"""
from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.base import DataError
from ..data.decode import read_image
from ..data.transforms import build_transform
from ..methods import read_adapter_config
from ..models import resolve_backbone
from ..runtime import RunConfig, autocast_for, probabilities, resolve_device
from ..runtime.device import check_device_name
from .explain import display_image, explain, explanation_target, overlay
from .outputs import RunOutputs
from .evaluate import load_run_model, run_thresholds

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")


@dataclass
class PredictConfig:
    batch_size: int = 64  # images per forward pass
    explain: bool = False  # also write a heatmap overlay per image (attention rollout for ViTs, Grad-CAM for ResNets)
    heatmaps: str | None = None  # folder for the overlays; None: <out without .csv>-heatmaps beside --out
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        check_device_name(self.device)


class RunPredictor:
    """A run's model ready to score images: evaluation transform, probabilities, decisions, heatmaps.

    ``model`` is any module computing the run's function: its own (:meth:`load`) or, in the
    server, one that shares its frozen base weights with other runs' models.
    """

    def __init__(self, model: nn.Module, config: RunConfig, outputs: RunOutputs, device: torch.device):
        backbone = config.backbone if config.backbone.is_resolved() else resolve_backbone(config.backbone)[0]
        self.model, self.config, self.outputs, self.device = model.eval(), config, outputs, device
        self.transform = build_transform(backbone.img_size, backbone.mean, backbone.std, "none")
        self.autocast = autocast_for(device, config.train.precision)

    @classmethod
    def load(cls, run_dir, device: str = "auto") -> "RunPredictor":
        model, _, config = load_run_model(run_dir)
        device = resolve_device(device)
        model.to(device)
        adapter = read_adapter_config(run_dir)
        thresholds = run_thresholds(Path(run_dir), adapter, model, config, device)
        return cls(model, config, RunOutputs.from_adapter(adapter, thresholds), device)

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """A decoded image (H, W[, 3]) in [0, 1] -> the model's input (3, S, S)."""
        return self.transform(image)

    @torch.no_grad()
    def scores(self, batch: torch.Tensor) -> np.ndarray:
        """Probabilities (B, K), float32, as :func:`medpeft.runtime.predict` computes them."""
        with self.autocast or contextlib.nullcontext():
            logits = self.model(batch.to(self.device, non_blocking=True))
        return probabilities(logits.float(), self.outputs.task).cpu().numpy()

    def heatmaps(self, batch: torch.Tensor, scores: np.ndarray) -> tuple[np.ndarray, str, list[str]]:
        """(heatmaps (B, S, S) in [0, 1], the explainer, the label each heatmap is for)."""
        targets = [explanation_target(self.outputs.task, row) for row in scores]
        heat, name = explain(self.model, batch.to(self.device), targets)
        return heat, name, [self.outputs.columns[t] for t in targets]


DANGLING = "a symbolic link whose target does not exist"


def gather_images(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """(image files in the order given, folders sorted and searched recursively; (input, problem) for
    every input or folder entry left out). In folders: files with an image suffix or none; hidden
    files and folders, other suffixes and dangling links are listed as skipped."""
    files, problems = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = _search(item, problems)
            if not found:
                problems.append((str(item), "folder holds no image files"))
            files += found
        elif item.is_file():
            files.append(item)
        else:
            problems.append((str(item), DANGLING if item.is_symlink() else "not found"))
    return files, problems


def _search(folder: Path, problems: list[tuple[str, str]]) -> list[Path]:
    """The image files under ``folder``, sorted; what is left out goes to ``problems``."""
    found = []
    for root, folders, names in os.walk(folder, followlinks=True):  # as rglob did
        base = Path(root)
        for name in sorted(folders):
            if name.startswith("."):
                problems.append((str(base / name), "hidden folder, not searched"))
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in names:
            path = base / name
            if name.startswith("."):
                problems.append((str(path), "hidden file"))
            elif not path.exists():
                problems.append((str(path), DANGLING))
            elif not path.is_file():
                problems.append((str(path), "not a regular file"))
            elif path.suffix and path.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append((str(path), f"suffix {path.suffix} is not an image type ({' '.join(IMAGE_SUFFIXES)})"))
            else:
                found.append(path)
    return sorted(found)


@dataclass
class PredictSummary:
    out: Path  # the predictions CSV
    rows: int  # images predicted
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    heatmaps: Path | None = None  # folder of the overlays, with --explain


def predict_files(run_dir, inputs: list[str | os.PathLike], out, config: PredictConfig | None = None, *,
                  console: Console | None = None, progress: bool = True) -> PredictSummary:
    """Predict every image in ``inputs`` (files or folders) with the run in ``run_dir`` and write one CSV
    row per readable image to ``out`` (atomically); unreadable files are skipped and returned."""
    config = config or PredictConfig()
    console = console or Console(quiet=True)
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the CSV file to write, e.g. {out / 'predictions.csv'}")
    files, skipped = gather_images(inputs)
    if not files:
        raise ValueError(f"no image files in {', '.join(map(str, inputs))}"
                         + "".join(f"; {name}: {problem}" for name, problem in skipped))
    predictor = RunPredictor.load(run_dir, config.device)
    heatmaps = None
    if config.explain:
        heatmaps = Path(config.heatmaps) if config.heatmaps else out.with_name(f"{out.stem}-heatmaps")
        heatmaps.mkdir(parents=True, exist_ok=True)
    writer = _PredictionWriter(out, predictor.outputs, heatmaps)
    with writer, _progress(len(files), console, progress) as bar:
        for chunk in _chunks(files, config.batch_size):
            batch = []
            for path in chunk:
                try:
                    batch.append((path, read_image(path)))
                except DataError as err:
                    skipped.append((str(path), str(err).removeprefix(f"{path}: ")))
            if batch:
                writer.write(predictor, batch)
            bar.update(bar.task_ids[0], advance=len(chunk))
        if writer.rows == 0:  # inside the writer: no CSV is left behind
            raise ValueError(f"none of the {len(files)} files could be read: "
                             + "; ".join(f"{name}: {problem}" for name, problem in skipped[:5]))
    return PredictSummary(out, writer.rows, skipped, heatmaps)


class _PredictionWriter:
    """Rows to a temporary CSV beside ``out``, renamed to ``out`` when all went well."""

    def __init__(self, out: Path, outputs: RunOutputs, heatmaps: Path | None):
        self.out, self.outputs, self.heatmaps = out, outputs, heatmaps
        self.tmp = out.with_name(f".{out.name}.tmp")
        self.rows = 0
        self.names: set[str] = set()

    def __enter__(self):
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.tmp, "w", newline="")
        self.csv = csv.writer(self.handle)
        heat = ["heatmap", "heatmap_of"] if self.heatmaps else []
        self.csv.writerow(["path", *self.outputs.csv_header(), *heat])
        return self

    def write(self, predictor: RunPredictor, batch: list[tuple[Path, np.ndarray]]) -> None:
        inputs = torch.stack([predictor.prepare(image) for _, image in batch])  # (B, 3, S, S)
        scores = predictor.scores(inputs)
        heat = predictor.heatmaps(inputs, scores) if self.heatmaps else None
        for i, (path, image) in enumerate(batch):
            extra = []
            if heat is not None:
                maps, explainer, targets = heat
                target = self._heatmap_path(path)
                overlay(display_image(image, predictor.config.backbone.img_size), maps[i]).save(target)
                what = "all labels" if explainer == "attention rollout" else targets[i]
                extra = [str(target), f"{what} ({explainer})"]
            self.csv.writerow([str(path), *self.outputs.csv_values(scores[i]), *extra])
            self.rows += 1

    def _heatmap_path(self, path: Path) -> Path:
        name, n = f"{path.stem}.heatmap.png", 1
        while name in self.names:  # the same file name in two folders
            n += 1
            name = f"{path.stem}-{n}.heatmap.png"
        self.names.add(name)
        return self.heatmaps / name

    def __exit__(self, kind, *exc):
        try:
            self.handle.close()  # flushes: a full disk may show only here
            if kind is None:
                os.replace(self.tmp, self.out)
        finally:
            self.tmp.unlink(missing_ok=True)  # gone after the rename; removed after any failure


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _progress(total: int, console: Console, enabled: bool) -> Progress:
    bar = Progress(TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not (enabled and console.is_terminal))
    bar.add_task("images", total=total)
    return bar
