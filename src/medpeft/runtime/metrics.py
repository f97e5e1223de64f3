"""Classification metrics with MedMNIST-evaluator semantics, on scikit-learn.

- AUROC: per label (multilabel), of the positive-class score (binary), or one-vs-rest per
  class (multiclass); the macro mean is the papers' headline number. A label whose test set
  has a single class has no AUROC; it is listed under ``auroc_undefined`` and left out.
- Accuracy: threshold 0.5 (binary, per-label mean for multilabel, as MedMNIST's getACC),
  argmax for multiclass. Macro-F1 at the same decisions (the Dutt et al. metric).
- Decisions at a threshold chosen on validation (binary and multilabel): a model's scores
  are not calibrated, so 0.5 can call every image negative while its AUROC is high.
  :func:`decision_thresholds` picks, per label, the threshold that maximises the validation
  F1 the metrics report (binary: the two-class macro-F1; multilabel: that label's F1), and
  ``compute_metrics(..., thresholds=...)`` adds accuracy and macro-F1 at those thresholds
  beside the 0.5 figures. Multiclass keeps argmax.
- ``one_class`` / ``one_class_labels``: the labels for which every image gets the same
  decision (at 0.5 / argmax; ``..._at_val_threshold`` at the validation thresholds): a model
  that has not learned to separate the classes, whatever its accuracy.
- ``auroc_ci95``: percentile bootstrap over test items (resamples that lose a class are
  redrawn) so a difference between two runs can be read against its noise; resamples are
  scored from draw counts (``runtime/auroc.py``), not by copying items into scikit-learn.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from .auroc import columns_of, weighted_macro_auroc
from .step import TrainingDiverged


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
    """Decisions at 0.5 (``score > 0.5``), or the argmax class (multiclass), (N, L)."""
    if task == "multiclass":
        return scores.argmax(axis=1)[:, None]
    return (scores > 0.5).astype(np.int64)


def threshold_decisions(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Decisions at per-label thresholds (``score >= threshold``, as the thresholds are chosen), (N, K)."""
    return (scores >= thresholds[None, :]).astype(np.int64)


def accuracy_and_f1(predicted: np.ndarray, labels: np.ndarray, task: str, num_classes: int) -> tuple[float, float]:
    """Accuracy (per-label mean for multilabel, as MedMNIST's getACC) and macro-F1 of decisions."""
    if task == "multiclass":
        accuracy = float((predicted[:, 0] == labels[:, 0]).mean())
        f1 = f1_score(labels[:, 0], predicted[:, 0], average="macro", labels=range(num_classes), zero_division=0)
    else:
        accuracy = float((predicted == labels).mean())  # per-label accuracy, averaged
        if task == "binary":
            f1 = f1_score(labels[:, 0], predicted[:, 0], average="macro", labels=[0, 1], zero_division=0)
        else:
            f1 = f1_score(labels, predicted, average="macro", zero_division=0)
    return accuracy, float(f1)


def one_class_labels(predicted: np.ndarray, task: str, names: list[str]) -> list[str]:
    """Labels whose decision is the same for every image (multiclass: the one class given to all)."""
    if task == "multiclass":
        classes = np.unique(predicted[:, 0])
        return [names[int(classes[0])]] if len(classes) == 1 else []
    return [name for name, column in zip(names, predicted.T) if (column == column[0]).all()]


def best_f1_threshold(scores: np.ndarray, truth: np.ndarray, *, two_class: bool) -> float:
    """The threshold on one label's ``scores`` whose decisions (``score >= t``) maximise F1.

    Candidates are the distinct score values, so every threshold calls at least one image
    positive. F1 is the positive class's, or with ``two_class`` the mean of the positive and
    negative classes' F1 (the binary macro-F1). Ties go to the candidate closest to 0.5, then
    to the lower one. A label with one class in ``truth`` has nothing to choose by: 0.5.
    """
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(truth, dtype=np.int64)
    positives = int(truth.sum())
    negatives = len(truth) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], truth[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # a cut can only fall between distinct scores
    tp = np.cumsum(hits)[last_of_tie]
    fp = np.cumsum(1 - hits)[last_of_tie]
    candidates = ranked[last_of_tie]
    fn, tn = positives - tp, negatives - fp
    f1 = 2 * tp / (2 * tp + fp + fn)  # positives > 0, so the denominator is never 0
    if two_class:
        f1 = (f1 + 2 * tn / (2 * tn + fn + fp)) / 2  # negatives > 0: tn + fp > 0
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0.0, atol=1e-12))
    ties = sorted(best, key=lambda i: (abs(candidates[i] - 0.5), candidates[i]))
    return float(candidates[ties[0]])


def decision_thresholds(scores: np.ndarray, labels: np.ndarray, task: str, column_names) -> dict[str, float] | None:
    """Per label, the validation threshold of :func:`best_f1_threshold` (binary: two-class macro-F1,
    multilabel: the label's F1); None for multiclass, which decides by argmax."""
    if task == "multiclass":
        return None
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    return {name: best_f1_threshold(scores[:, k], labels[:, k], two_class=task == "binary")
            for k, name in enumerate(column_names)}


def compute_metrics(scores: np.ndarray, labels: np.ndarray, task: str, column_names, *,
                    n_bootstrap: int = 0, seed: int = 0, thresholds: dict[str, float] | None = None) -> dict:
    """All metrics of one split. ``scores`` are probabilities (sigmoid or softmax), (N, K).
    With ``thresholds`` ({label: threshold}, binary and multilabel), accuracy and macro-F1 at
    those thresholds too."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not np.isfinite(scores).all():
        raise TrainingDiverged("scores contain NaN or inf; the model diverged")
    per_label = per_label_auroc(scores, labels, task)
    names = list(column_names)
    predicted = decisions(scores, task)
    accuracy, f1 = accuracy_and_f1(predicted, labels, task, len(names))
    defined = [v for v in per_label if not math.isnan(v)]
    constant = one_class_labels(predicted, task, names)
    metrics = {
        "auroc": float(np.mean(defined)) if defined else math.nan,
        "auroc_per_label": {n: v for n, v in zip(names, per_label) if not math.isnan(v)},
        "acc": accuracy,
        "f1_macro": float(f1),
        "one_class": bool(constant),
        "one_class_labels": constant,
        "n": int(len(labels)),
    }
    if thresholds is not None and task != "multiclass":
        metrics.update(_at_thresholds(scores, labels, task, names, thresholds))
    undefined = [n for n, v in zip(names, per_label) if math.isnan(v)]
    if undefined:
        metrics["auroc_undefined"] = undefined
    if n_bootstrap > 0 and defined:
        metrics["auroc_ci95"] = bootstrap_ci(scores, labels, task, n_bootstrap, seed)
    return metrics


def _at_thresholds(scores: np.ndarray, labels: np.ndarray, task: str, names: list[str], thresholds: dict) -> dict:
    missing = [name for name in names if name not in thresholds]
    if missing:
        raise ValueError(f"decision thresholds are missing for label(s) {missing} (have {sorted(thresholds)}); "
                         "they must come from a run with the same labels")
    values = np.array([float(thresholds[name]) for name in names])
    predicted = threshold_decisions(scores, values)
    accuracy, f1 = accuracy_and_f1(predicted, labels, task, len(names))
    constant = one_class_labels(predicted, task, names)
    return {"acc_at_val_threshold": accuracy, "f1_macro_at_val_threshold": f1,
            "thresholds": dict(zip(names, values.tolist())), "one_class_at_val_threshold": bool(constant),
            "one_class_labels_at_val_threshold": constant}


def one_class_warning(metrics: dict, task: str, split: str = "test") -> str:
    """A warning naming the labels decided the same way for every image of ``split`` ("" if none)."""
    at_half = metrics.get("one_class_labels") or []
    at_val = metrics.get("one_class_labels_at_val_threshold") or []
    if not at_half and not at_val:
        return ""
    where = []
    if at_half:
        where.append(f"{', '.join(at_half)} {'by argmax' if task == 'multiclass' else 'at threshold 0.5'}")
    if at_val:
        where.append(f"{', '.join(at_val)} at the validation threshold")
    return (f"the model gives every {split} image the same decision for {'; '.join(where)}, so those "
            "decisions carry no information (accuracy there is the majority share); train longer "
            "(--min-steps, --steps) or check the learning rate")


def bootstrap_ci(scores: np.ndarray, labels: np.ndarray, task: str, n_bootstrap: int = 1000,
                 seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the macro AUROC.

    Resample ``b`` draws ``numpy.random.default_rng(seed).integers(0, N, N)`` and is scored as
    ``macro_auroc`` scores those items, from their draw counts (``runtime/auroc.py``). A resample
    in which a label that has both classes in the full split loses one of them is redrawn (its
    macro AUROC would average fewer labels than the estimate does)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    scores = np.asarray(scores, dtype=np.float64)
    truth = _one_hot_or_binary(labels, task, scores.shape[1])
    defined = [c for c in range(truth.shape[1]) if 0 < truth[:, c].sum() < n]
    columns = columns_of(scores, labels, task)
    defined_truth = truth[:, defined].astype(np.float64)
    values = []
    attempts = 0
    while len(values) < n_bootstrap and attempts < 3 * n_bootstrap:
        attempts += 1
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        positives = weights @ defined_truth
        if defined and ((positives == 0) | (positives == n)).any():
            continue  # a label lost a class
        value = weighted_macro_auroc(columns, weights)
        if not math.isnan(value):
            values.append(value)
    if len(values) < n_bootstrap // 2:
        warnings.warn("too few valid bootstrap resamples for a confidence interval", stacklevel=2)
        return [math.nan, math.nan]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


MIN_SUBGROUP = 10  # images a subgroup needs to be scored (a 2-image group would get AUROC 1.0, CI [1.0, 1.0])


def subgroup_metrics(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, task: str, column_names, *,
                     column: str, thresholds: dict[str, float] | None = None, n_bootstrap: int = 0,
                     seed: int = 0) -> dict:
    """The metrics of every subgroup of a split (e.g. patient sex, Fitzpatrick skin type), each
    with its bootstrap CI, and the largest AUROC gap between two subgroups — the bias check
    Dutt et al. leave open. ``groups`` (N,) holds each item's subgroup value ("" = missing). A
    subgroup of fewer than ``MIN_SUBGROUP`` images reports its ``n``, AUROC NaN (``null`` in
    ``metrics.json``) and a ``note``; one whose labels have one class has AUROC NaN and no CI (as
    ``compute_metrics`` gives); neither counts towards the gap."""
    groups = np.asarray(groups).astype(str)
    if len(groups) != len(labels):
        raise ValueError(f"subgroups: {len(groups)} values for {len(labels)} items")
    per_group = {}
    for value in sorted(set(groups.tolist())):
        index = np.flatnonzero(groups == value)
        if len(index) < MIN_SUBGROUP:  # too few to score: its n, and no AUROC or CI
            per_group[value or "(missing)"] = {"auroc": math.nan, "n": int(len(index)),
                                               "note": f"fewer than {MIN_SUBGROUP} images: not scored"}
            continue
        part = compute_metrics(scores[index], labels[index], task, column_names, n_bootstrap=n_bootstrap,
                               seed=seed, thresholds=thresholds)
        per_group[value or "(missing)"] = {key: part[key] for key in (
            "auroc", "auroc_ci95", "acc", "f1_macro", "acc_at_val_threshold", "f1_macro_at_val_threshold", "n")
            if key in part}
    defined = {k: v["auroc"] for k, v in per_group.items() if not math.isnan(v["auroc"])}
    result = {"column": column, "groups": per_group}
    if len(defined) >= 2:
        low, high = min(defined, key=defined.get), max(defined, key=defined.get)
        result.update(auroc_gap=defined[high] - defined[low], auroc_gap_between=[low, high])
    return result
