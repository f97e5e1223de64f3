"""Metrics against hand-computed values and MedMNIST evaluator semantics."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.runtime import bootstrap_ci, compute_metrics


def test_binary_uses_the_positive_class_score():
    labels = np.array([[0], [0], [1], [1]])
    scores = np.array([[0.1], [0.6], [0.4], [0.9]])
    m = compute_metrics(scores, labels, "binary", ["pneumonia"])
    assert m["auroc"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    assert m["acc"] == pytest.approx(0.5)  # threshold 0.5: 0.6 and 0.4 are wrong
    assert m["auroc_per_label"] == {"pneumonia": pytest.approx(0.75)}
    assert m["f1_macro"] == pytest.approx(0.5)


def test_multilabel_macro_skips_single_class_labels():
    labels = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.2, 0.5, 0.1], [0.8, 0.5, 0.2], [0.3, 0.5, 0.3], [0.9, 0.5, 0.4]])
    m = compute_metrics(scores, labels, "multilabel", ["a", "b", "c"])
    assert m["auroc"] == pytest.approx(1.0)  # only "a" has both classes
    assert m["auroc_undefined"] == ["b", "c"]
    # per-label accuracy averaged (MedMNIST getACC): a 4/4, b 0/4 (0.5 is not > 0.5), c 4/4
    assert m["acc"] == pytest.approx(8 / 12)


def test_multiclass_one_vs_rest_and_argmax():
    labels = np.array([[0], [1], [2], [2]])
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    m = compute_metrics(scores, labels, "multiclass", ["x", "y", "z"])
    assert m["acc"] == pytest.approx(0.75)
    assert m["auroc_per_label"]["x"] == pytest.approx(1.0)
    assert m["auroc_per_label"]["y"] == pytest.approx(1.0)  # 0.8 above 0.2, 0.5, 0.1
    assert m["auroc_per_label"]["z"] == pytest.approx(1.0)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)

    def sample(n):
        labels = rng.integers(0, 2, (n, 1))
        scores = np.clip(labels * 0.3 + rng.random((n, 1)) * 0.7, 0, 1)
        return scores, labels

    small, large = sample(100), sample(2000)
    m_small = compute_metrics(*small, "binary", ["p"], n_bootstrap=200)
    m_large = compute_metrics(*large, "binary", ["p"], n_bootstrap=200)
    for m in (m_small, m_large):
        low, high = m["auroc_ci95"]
        assert low < m["auroc"] < high
    assert np.diff(m_large["auroc_ci95"])[0] < np.diff(m_small["auroc_ci95"])[0]
    assert bootstrap_ci(*small, "binary", 50, seed=1) == bootstrap_ci(*small, "binary", 50, seed=1)


def test_nan_scores_are_an_error():
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(np.array([[np.nan], [0.5]]), np.array([[0], [1]]), "binary", ["p"])
