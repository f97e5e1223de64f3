"""When is pretraining done: a linear probe of the encoder, measured while it pretrains.

Every ``probe_every`` epochs (and after the last one) the encoder is frozen as a classifier
backbone would see it — for MAE the fine-tuning ViT (``medpeft finetune --checkpoint``: global
average pooling of the patch tokens, then a fresh ``fc_norm``; the MAE's ``norm`` and decoder
unused), for SimCLR the backbone's pooled features before the projection head — and a
scikit-learn logistic regression is fitted on the pooled features of the probe dataset's
training split (standardised), then scored on its validation split with medpeft's macro AUROC
(:func:`medpeft.runtime.metrics.macro_auroc`). Test images are never touched.

The probe is an observer: it runs in eval mode without gradients, on a copy of the encoder's
weights (MAE) or the encoder itself (SimCLR, whose BatchNorm statistics eval mode leaves alone),
and inside a fork of torch's, NumPy's and Python's random state, so a run with a probe ends
with bit-identical weights to one without. :class:`ProbeTracker` keeps the curve, writes
``probe.csv`` and ``probe.png`` beside the reconstruction figure at every probe, and says when
the AUROC has not improved for ``probe_patience`` probes (the plateau stop).
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from ..data import DataSplits, load_dataset
from ..data.transforms import build_transform
from ..models.backbones import create_backbone
from ..runtime.metrics import macro_auroc
from ..serialization import atomic_write, atomic_write_text
from .config import PretrainConfig
from .mae import MaskedAutoencoderViT
from .simclr import SimCLR

CSV, FIGURE = "probe.csv", "probe.png"
COLUMNS = ("epoch", "probe_auroc", "heldout_loss")


def load_probe_data(config: PretrainConfig) -> DataSplits:
    """The probe's labelled splits at the backbone's size, both with the evaluation transform
    (``config`` resolved); a spec that does not load, or a training split with one class, is a
    ValueError before any training."""
    train, backbone = config.train, config.backbone
    try:
        splits = load_dataset(train.probe, data_root=config.data.data_root, fraction=train.probe_fraction,
                              skip_bad=config.data.skip_bad, allow_overlap=config.data.allow_overlap)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"probe {train.probe!r}: {err}") from None
    labels = np.asarray(splits.train.labels)
    if splits.info.task != "multilabel" and len(np.unique(labels[:, 0])) < 2:
        raise ValueError(f"probe {train.probe!r}: its training split (fraction {train.probe_fraction:g}) has one "
                         "class; a linear probe needs at least two (raise --probe-fraction)")
    eval_tf = build_transform(backbone.img_size, backbone.mean, backbone.std, "none")
    return splits.with_transforms(eval_tf, eval_tf)


@contextlib.contextmanager
def untouched_rng():
    """Python's, NumPy's and torch's global random state as they were, whatever runs inside."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


class FeatureView:
    """The encoder of a pretraining model, pooled as fine-tuning would pool it."""

    def __init__(self, model: nn.Module, config: PretrainConfig):
        self.model = model
        self.backbone = None
        if isinstance(model, MaskedAutoencoderViT):
            with untouched_rng():  # building the copy draws initial weights
                self.backbone = create_backbone(config.backbone, num_classes=0)
            self.backbone.eval().requires_grad_(False)
        elif not isinstance(model, SimCLR):
            raise ValueError(f"no probe features for {type(model).__name__}")

    def network(self) -> nn.Module:
        """A module mapping images (B, C, H, W) to pooled features (B, D) with today's weights."""
        if self.backbone is None:
            return self.model.encoder
        encoder = set(self.model.encoder_keys())
        state = {k: v for k, v in self.model.state_dict().items() if k in encoder}
        result = self.backbone.load_state_dict(state, strict=False)
        unexpected = [k for k in result.unexpected_keys if not k.startswith("norm.")]  # fine-tuning pools with fc_norm
        missing = [k for k in result.missing_keys if not k.startswith("fc_norm.")]
        if unexpected or missing:
            raise AssertionError(f"probe backbone does not match the MAE encoder: {unexpected or missing}")
        self.backbone.to(next(self.model.parameters()).device)
        return self.backbone


@torch.no_grad()
def features(network: nn.Module, dataset, batch_size: int, device, autocast=None) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features (N, D), labels (N, L)) over ``dataset`` in order, in eval mode."""
    was_training = network.training
    network.eval()
    out, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with autocast or contextlib.nullcontext():
            out.append(network(images.to(device)).float().cpu())
        labels.append(targets.reshape(len(targets), -1).long())
    network.train(was_training)
    return torch.cat(out).numpy().astype(np.float64), torch.cat(labels).numpy()


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                  task: str, num_outputs: int) -> float:
    """Macro AUROC on validation of logistic regressions fitted on standardised training features
    (one per label for multilabel; multinomial for multiclass)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    train_x, val_x = scaler.transform(train_x), scaler.transform(val_x)
    columns = [train_y[:, j] for j in range(train_y.shape[1])] if task == "multilabel" else [train_y[:, 0]]
    scores = np.full((len(val_x), num_outputs), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j, y in enumerate(columns):
            if len(np.unique(y)) < 2:
                continue  # a label with one class in training: a constant score (AUROC 0.5)
            classifier = LogisticRegression(max_iter=1000, random_state=0).fit(train_x, y)
            proba = classifier.predict_proba(val_x)
            if task == "multiclass":
                scores = np.zeros((len(val_x), num_outputs))
                scores[:, classifier.classes_] = proba
            else:
                scores[:, j] = proba[:, 1]
    return macro_auroc(scores, val_y, task)


@dataclass
class ProbeTracker:
    """The probe's schedule, curve, files and plateau stop for one pretraining run."""

    data: DataSplits
    every: int
    patience: int | None
    folder: Path
    batch_size: int
    title: str = ""

    def __post_init__(self):
        self.history: list[dict] = []
        self.view: FeatureView | None = None

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether to probe after ``epoch`` (1-based) of ``epochs``."""
        return epoch % self.every == 0 or epoch == epochs

    def measure(self, model: nn.Module, config: PretrainConfig, device, autocast=None) -> float:
        """The probe AUROC of ``model``'s encoder now; nothing of the run's state changes."""
        with untouched_rng():
            if self.view is None:
                self.view = FeatureView(model, config)
            network = self.view.network()
            was_training = model.training
            model.eval()
            try:
                train = features(network, self.data.train, self.batch_size, device, autocast)
                val = features(network, self.data.val, self.batch_size, device, autocast)
            finally:
                model.train(was_training)
            return fit_and_score(*train, *val, self.data.info.task, self.data.info.num_outputs)

    def restore(self, history: list[dict]) -> None:
        """The curve so far from a resumed run's epoch records."""
        self.history = [_row(h["epoch"], h["probe_auroc"], h.get("val_loss")) for h in history if "probe_auroc" in h]

    def add(self, epoch: int, auroc: float, heldout: float | None) -> str:
        """Record a probe, rewrite probe.csv and probe.png; return why to stop ('' = go on)."""
        self.history.append(_row(epoch, auroc, heldout))
        self.write()
        best = self.best()
        waited = sum(1 for row in self.history if row["epoch"] > best["epoch"])
        if self.patience is not None and waited >= self.patience:
            return (f"stopped early: the probe AUROC has not improved for {waited} probe"
                    f"{'s' * (waited != 1)} since epoch {best['epoch']} (best {best['probe_auroc']:.4f})")
        return ""

    def best(self) -> dict:
        """The first probe with the highest AUROC (NaN counts as no improvement)."""
        best = self.history[0]
        for row in self.history[1:]:
            if not math.isnan(row["probe_auroc"]) and (math.isnan(best["probe_auroc"])
                                                      or row["probe_auroc"] > best["probe_auroc"]):
                best = row
        return best

    def write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in self.history)
        atomic_write_text(self.folder / CSV, text.getvalue())
        save_probe_figure(self.history, self.folder / FIGURE, self.title)


def _row(epoch: int, auroc: float, heldout: float | None) -> dict:
    return {"epoch": int(epoch), "probe_auroc": float(auroc), "heldout_loss": heldout}


def save_probe_figure(history: list[dict], path: Path, title: str = "") -> Path:
    """Probe AUROC (left axis) and held-out loss (right axis) against the epoch."""
    figure = Figure(figsize=(5.5, 3.4), layout="constrained")
    axis = figure.subplots()
    epochs = [row["epoch"] for row in history]
    axis.plot(epochs, [row["probe_auroc"] for row in history], "o-", color="tab:blue", label="probe AUROC")
    axis.set_xlabel("epoch")
    axis.set_ylabel("probe AUROC (validation)", color="tab:blue")
    losses = [(row["epoch"], row["heldout_loss"]) for row in history if row["heldout_loss"] is not None]
    if losses:
        right = axis.twinx()
        right.plot(*zip(*losses), "s--", color="tab:orange", label="held-out loss")
        right.set_ylabel("held-out loss", color="tab:orange")
    if title:
        axis.set_title(title, fontsize=9)
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png"),
                 suffix=f".tmp{path.suffix}")  # a failed write leaves no temporary file
    return path
