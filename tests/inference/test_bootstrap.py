"""Bootstrap CIs of the macro AUROC for multiclass and multilabel tasks (binary: test_metrics.py).

Checked: the interval brackets the point estimate, narrows as the test set grows (its width
goes roughly as 1/sqrt(n): 20x the items, about a quarter of the width), is the same for the
same seed and differs for another, and degenerates to a point when every resample scores the
same. Scores are drawn so that the truth is well inside (0.5, 1).
"""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.runtime import bootstrap_ci, compute_metrics, macro_auroc

CLASSES, LABELS = 3, 4


def multiclass(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, (n, 1))
    logits = rng.normal(size=(n, CLASSES))
    logits[np.arange(n), labels[:, 0]] += 1.0
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return scores, labels


def multilabel(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, LABELS))
    scores = 1.0 / (1.0 + np.exp(-(labels * 1.2 + rng.normal(size=(n, LABELS)))))
    return scores, labels


SAMPLES = {"multiclass": (multiclass, ["a", "b", "c"]), "multilabel": (multilabel, ["w", "x", "y", "z"])}


@pytest.mark.parametrize("task", SAMPLES)
def test_the_interval_brackets_the_estimate_and_narrows_with_more_items(task):
    sample, names = SAMPLES[task]
    widths = []
    for n in (100, 2000):
        metrics = compute_metrics(*sample(n), task, names, n_bootstrap=100, seed=0)
        low, high = metrics["auroc_ci95"]
        assert 0.5 < low < metrics["auroc"] < high < 1.0, (n, low, metrics["auroc"], high)
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0], widths  # 1/sqrt(20) = 0.22 expected


@pytest.mark.parametrize("task", SAMPLES)
def test_the_interval_is_deterministic_per_seed(task):
    sample, _ = SAMPLES[task]
    scores, labels = sample(200)
    first = bootstrap_ci(scores, labels, task, n_bootstrap=40, seed=3)
    assert bootstrap_ci(scores, labels, task, n_bootstrap=40, seed=3) == first
    assert bootstrap_ci(scores, labels, task, n_bootstrap=40, seed=4) != first


@pytest.mark.parametrize("task", SAMPLES)
def test_a_higher_level_gives_a_wider_interval_around_the_same_middle(task):
    sample, _ = SAMPLES[task]
    scores, labels = sample(200)
    (low50, high50), (low95, high95) = (bootstrap_ci(scores, labels, task, n_bootstrap=60, seed=0, level=level)
                                        for level in (0.5, 0.95))
    assert low95 < low50 < high50 < high95
    assert high50 - low50 < 0.6 * (high95 - low95)  # normal quantiles: 0.674 / 1.96 = 0.34


@pytest.mark.parametrize("task", SAMPLES)
def test_a_perfect_ranking_gives_a_point_interval(task):
    sample, _ = SAMPLES[task]
    _, labels = sample(60)
    width = CLASSES if task == "multiclass" else LABELS
    truth = np.eye(CLASSES)[labels[:, 0]] if task == "multiclass" else labels
    scores = truth * 0.5 + 0.25  # positives 0.75, negatives 0.25 in every column
    assert macro_auroc(scores, labels, task) == 1.0 and scores.shape[1] == width
    assert bootstrap_ci(scores, labels, task, n_bootstrap=50, seed=0) == [1.0, 1.0]


def rare_class_sample():
    """40 items, the classes ranked perfectly except the single item of class 2, ranked last
    in its own column: macro AUROC (1 + 1 + 0) / 3 = 2/3 whenever class 2 is present."""
    labels = np.array([[0], [1]] * 19 + [[0], [2]])
    scores = np.eye(3)[labels[:, 0]] * 0.4 + 0.2  # own class 0.6, the others 0.2
    scores[labels[:, 0] == 2] = [0.5, 0.5, 0.0]  # class 2's only item: below every 0.6, its own column 0
    return scores, labels


def test_rare_class_estimate_is_two_thirds_and_inside_the_interval():
    scores, labels = rare_class_sample()
    metrics = compute_metrics(scores, labels, "multiclass", ["a", "b", "c"], n_bootstrap=100)
    assert metrics["auroc"] == pytest.approx(2 / 3)
    low, high = metrics["auroc_ci95"]
    assert low <= metrics["auroc"] <= high


def test_resamples_that_lose_a_class_are_redrawn():
    scores, labels = rare_class_sample()
    low, high = bootstrap_ci(scores, labels, "multiclass", n_bootstrap=100, seed=0)
    assert low == pytest.approx(2 / 3) and high == pytest.approx(2 / 3)


def _copied_items_ci(scores, labels, task, n_bootstrap, seed, level=0.95):
    """The bootstrap as a reader would write it: copy each resample's items, score them with
    macro_auroc (scikit-learn), redraw a resample that loses a class of a label."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    truth = np.eye(scores.shape[1], dtype=int)[labels[:, 0]] if task == "multiclass" else labels
    defined = [c for c in range(truth.shape[1]) if 0 < truth[:, c].sum() < n]
    values, attempts = [], 0
    while len(values) < n_bootstrap and attempts < 3 * n_bootstrap:
        attempts += 1
        index = rng.integers(0, n, n)
        positives = truth[index][:, defined].sum(axis=0)
        if ((positives == 0) | (positives == n)).any():
            continue
        values.append(macro_auroc(scores[index], labels[index], task))
    tail = (1 - level) / 2 * 100
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_the_interval_is_the_copied_items_bootstrap_to_1e12(task):
    """bootstrap_ci scores a resample from its items' draw counts (runtime/auroc.py), not by
    copying them into scikit-learn: the same resamples, the same interval. Scores are rounded
    to two decimals so that ties are common; 12 items make class-losing redraws happen."""
    for n in (12, 300):
        if task == "binary":
            rng = np.random.default_rng(n)
            labels = rng.integers(0, 2, (n, 1))
            scores = np.round(1.0 / (1.0 + np.exp(-(labels + rng.normal(size=(n, 1))))), 2)
        else:
            scores, labels = SAMPLES[task][0](n, seed=n)
            scores = np.round(scores, 2)
        expected = _copied_items_ci(scores, labels, task, 200, seed=5)
        assert bootstrap_ci(scores, labels, task, n_bootstrap=200, seed=5) == pytest.approx(expected, abs=1e-12)
