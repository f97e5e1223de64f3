"""Classification metrics with MedMNIST-evaluator semantics, on scikit-learn.

- AUROC: per label (multilabel), of the positive-class score (binary), or one-vs-rest per
  class (multiclass); the macro mean is the papers' headline number. A label whose test set
  has a single class has no AUROC; it is listed under ``auroc_undefined`` and left out.
- Accuracy: threshold 0.5 (binary, per-label mean for multilabel, as MedMNIST's getACC),
  argmax for multiclass. Macro-F1 at the same decisions (the Dutt et al. metric).
- ``auroc_ci95``: percentile bootstrap over test items (resamples that lose a class are
  redrawn) so a difference between two runs can be read against its noise.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def _one_hot_or_binary(labels: np.ndarray, task: str, num_columns: int) -> np.ndarray:
    if task == "multiclass":
        return np.eye(num_columns, dtype=np.int64)[labels[:, 0]]
    return labels.astype(np.int64)


def per_label_auroc(scores: np.ndarray, labels: np.ndarray, task: str) -> list[float]:
    """AUROC of every output column (NaN when that column's truth has one class)."""
    truth = _one_hot_or_binary(labels, task, scores.shape[1])
    values = []
    for column in range(scores.shape[1]):
        y = truth[:, column]
        values.append(float(roc_auc_score(y, scores[:, column])) if 0 < y.sum() < len(y) else math.nan)
    return values


def macro_auroc(scores: np.ndarray, labels: np.ndarray, task: str) -> float:
    values = [v for v in per_label_auroc(scores, labels, task) if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def decisions(scores: np.ndarray, task: str) -> np.ndarray:
    if task == "multiclass":
        return scores.argmax(axis=1)[:, None]
    return (scores > 0.5).astype(np.int64)


def compute_metrics(scores: np.ndarray, labels: np.ndarray, task: str, column_names, *,
                    n_bootstrap: int = 0, seed: int = 0) -> dict:
    """All metrics of one split. ``scores`` are probabilities (sigmoid or softmax), (N, K)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; the model diverged")
    per_label = per_label_auroc(scores, labels, task)
    names = list(column_names)
    predicted = decisions(scores, task)
    if task == "multiclass":
        accuracy = float((predicted[:, 0] == labels[:, 0]).mean())
        f1 = f1_score(labels[:, 0], predicted[:, 0], average="macro", labels=range(len(names)), zero_division=0)
    else:
        accuracy = float((predicted == labels).mean())  # per-label accuracy, averaged
        if task == "binary":
            f1 = f1_score(labels[:, 0], predicted[:, 0], average="macro", labels=[0, 1], zero_division=0)
        else:
            f1 = f1_score(labels, predicted, average="macro", zero_division=0)
    defined = [v for v in per_label if not math.isnan(v)]
    metrics = {
        "auroc": float(np.mean(defined)) if defined else math.nan,
        "auroc_per_label": {n: v for n, v in zip(names, per_label) if not math.isnan(v)},
        "acc": accuracy,
        "f1_macro": float(f1),
        "n": int(len(labels)),
    }
    undefined = [n for n, v in zip(names, per_label) if math.isnan(v)]
    if undefined:
        metrics["auroc_undefined"] = undefined
    if n_bootstrap > 0 and defined:
        metrics["auroc_ci95"] = bootstrap_ci(scores, labels, task, n_bootstrap, seed)
    return metrics


def bootstrap_ci(scores: np.ndarray, labels: np.ndarray, task: str, n_bootstrap: int = 1000,
                 seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the macro AUROC."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    values = []
    attempts = 0
    while len(values) < n_bootstrap and attempts < 3 * n_bootstrap:
        attempts += 1
        index = rng.integers(0, n, n)
        value = macro_auroc(scores[index], labels[index], task)
        if not math.isnan(value):
            values.append(value)
    if len(values) < n_bootstrap // 2:
        warnings.warn("too few valid bootstrap resamples for a confidence interval", stacklevel=2)
        return [math.nan, math.nan]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]
