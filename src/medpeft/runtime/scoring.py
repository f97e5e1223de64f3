"""Running a model over a split and scoring it (validation during training, test at the end,
re-scoring of saved runs), and choosing decision thresholds on a validation split."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data.base import DatasetInfo
from .metrics import compute_metrics, decision_thresholds


def probabilities(logits: torch.Tensor, task: str) -> torch.Tensor:
    return logits.softmax(dim=-1) if task == "multiclass" else logits.sigmoid()


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, task: str, device: torch.device,
            autocast: contextlib.AbstractContextManager | None = None,
            on_logits=None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, K), labels (N, L)) over the whole loader, in loader order.
    ``on_logits(logits, targets)``, when given, sees each batch's logits (fp32) and targets too
    (e.g. a validation loss from the same forward pass)."""
    was_training = model.training
    model.eval()
    scores, labels = [], []
    for images, targets in loader:
        with autocast or contextlib.nullcontext():
            logits = model(images.to(device, non_blocking=True))
        if on_logits is not None:
            on_logits(logits.float(), targets)
        scores.append(probabilities(logits.float(), task).cpu())
        labels.append(targets.reshape(len(targets), -1).long())
    model.train(was_training)
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()


def evaluate(model: nn.Module, loader: DataLoader, info: DatasetInfo, device: torch.device, *,
             n_bootstrap: int = 0, seed: int = 0, autocast=None, thresholds: dict[str, float] | None = None) -> dict:
    """The metrics of ``model`` on ``loader`` (with ``thresholds``: also at those decision thresholds)."""
    scores, labels = predict(model, loader, info.task, device, autocast)
    return compute_metrics(scores, labels, info.task, info.column_names, n_bootstrap=n_bootstrap, seed=seed,
                           thresholds=thresholds)


def validation_thresholds(model: nn.Module, loader: DataLoader, info: DatasetInfo, device: torch.device, *,
                          autocast=None) -> tuple[dict, dict[str, float] | None]:
    """(metrics of ``loader``'s split, the decision thresholds chosen on it; None for multiclass)."""
    scores, labels = predict(model, loader, info.task, device, autocast)
    metrics = compute_metrics(scores, labels, info.task, info.column_names)
    return metrics, decision_thresholds(scores, labels, info.task, info.column_names)
