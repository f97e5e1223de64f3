"""AUROC of items repeated by integer weights, for bootstraps: the Mann-Whitney form on tie
groups found once, so a resample costs a few array operations instead of a scikit-learn call.

A bootstrap resample draws items with replacement; scoring it as "the items repeated
``weights`` times" gives the same number as ``roc_auc_score`` on the copied items (the tests
hold it to 1e-12 against ``runtime.metrics.macro_auroc``) at a few percent of the cost:
sklearn's input validation alone is ~4 ms a call, which made a run's 500-resample test CI
take longer than fine-tuning a linear probe. scikit-learn has no weighted-by-count AUROC on
precomputed tie groups, hence this file; point estimates still come from ``roc_auc_score``.
Used by ``runtime.metrics.bootstrap_ci`` (one run's CI) and ``studies/bootstrap.py`` /
``studies/paired.py`` (seed means and paired differences in reports).
"""
from __future__ import annotations

import math

import numpy as np


class AurocColumn:
    """One output column of one run: its scores' tie groups (ascending) and its truth."""

    def __init__(self, scores: np.ndarray, truth: np.ndarray):
        values, self.group = np.unique(scores, return_inverse=True)
        self.n_groups = len(values)
        self.positive = truth.astype(bool)

    def auroc(self, weights: np.ndarray) -> float:
        """AUROC of the items repeated ``weights`` times: P(score_pos > score_neg) + P(tie)/2."""
        w_pos, w_neg = weights[self.positive], weights[~self.positive]
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos == 0 or total_neg == 0:
            return math.nan
        negatives = np.bincount(self.group[~self.positive], weights=w_neg, minlength=self.n_groups)
        credit = np.cumsum(negatives) - 0.5 * negatives  # negatives below a group, ties count half
        return float((w_pos * credit[self.group[self.positive]]).sum() / (total_pos * total_neg))


def columns_of(scores: np.ndarray, labels: np.ndarray, task: str) -> list[AurocColumn]:
    """Per-output truth as in ``runtime.metrics.per_label_auroc`` (one-vs-rest for multiclass)."""
    truth = np.eye(scores.shape[1], dtype=np.int64)[labels[:, 0]] if task == "multiclass" else labels
    return [AurocColumn(scores[:, k], truth[:, k]) for k in range(scores.shape[1])]


def weighted_macro_auroc(columns: list[AurocColumn], weights: np.ndarray) -> float:
    """Macro AUROC of the items repeated ``weights`` times (ones: the test set as it is); a
    column whose weighted items have one class is left out, as ``macro_auroc`` leaves it out."""
    values = [v for v in (c.auroc(weights) for c in columns) if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan
