"""Weak references for accuracy bars: what a model that learns nothing but brightness scores.

A test that asks "did this run learn?" compares it with these on the same label subset, so a
bar cannot be cleared by intensity statistics alone (on PneumoniaMNIST the mean pixel value by
itself scores 0.575 test AUROC, mean and standard deviation together 0.70-0.75).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medpeft.data import load_dataset


def brightness_auroc(spec: str, data_root, fraction: float, fraction_seed: int) -> float:
    """Test AUROC of a logistic regression on each image's (mean, std) of pixels, fitted on the
    training subset that ``fraction`` and ``fraction_seed`` draw (binary tasks)."""
    splits = load_dataset(spec, data_root=data_root, fraction=fraction, fraction_seed=fraction_seed)

    def features(split):
        images = np.stack([np.asarray(split[i][0], dtype=np.float64).ravel() for i in range(len(split))])
        return np.stack([images.mean(1), images.std(1)], 1), np.asarray(split.labels).ravel()

    (x_train, y_train), (x_test, y_test) = features(splits.train), features(splits.test)
    model = LogisticRegression().fit(x_train, y_train)
    return float(roc_auc_score(y_test, model.decision_function(x_test)))
