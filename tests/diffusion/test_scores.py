"""The scores on synthetic features: FD is zero for identical sets and grows with a known shift;
precision/recall and conditional accuracy on cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.diffusion.scores import (conditional_accuracy, frechet_distance, precision_recall, prompt_items,
                                      split_halves)


@pytest.fixture
def features():
    return np.random.default_rng(0).normal(size=(400, 8))


def test_fd_is_zero_for_identical_sets(features):
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)


def test_fd_of_a_mean_offset_is_its_squared_length(features):
    """Same covariance, means apart by d: FD = |d|^2 exactly, and it grows with the shift."""
    shifts = [0.1, 0.5, 1.0, 2.0]
    values = []
    for shift in shifts:
        offset = np.full(features.shape[1], shift)
        values.append(frechet_distance(features, features + offset))
        assert values[-1] == pytest.approx(shift ** 2 * features.shape[1], rel=1e-4)
    assert values == sorted(values)


def test_fd_sees_a_change_of_spread(features):
    assert frechet_distance(features, 2 * features) > 1.0


def test_precision_recall_of_identical_and_disjoint_sets(features):
    assert precision_recall(features, features, k=3) == (1.0, 1.0)
    assert precision_recall(features, features + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_of_a_collapsed_generator(features):
    """All generated points at the real mean: precise, but they cover little of the real set."""
    collapsed = np.zeros((50, features.shape[1])) + 1e-3 * np.random.default_rng(1).normal(size=(50, 8))
    precision, recall = precision_recall(features, collapsed, k=3)
    assert precision == 1.0 and recall < 0.1


def test_conditional_accuracy_is_balanced():
    prompted = np.array([[0]] * 90 + [[1]] * 10)
    always_zero = np.zeros_like(prompted)
    assert conditional_accuracy(always_zero, prompted, "binary") == pytest.approx(0.5)
    assert conditional_accuracy(prompted, prompted, "binary") == 1.0
    multilabel = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert conditional_accuracy(multilabel, multilabel, "multilabel") == 1.0
    assert conditional_accuracy(1 - multilabel, multilabel, "multilabel") == 0.0


def test_halves_are_disjoint_stratified_and_fixed():
    labels = np.array([[0]] * 30 + [[1]] * 70)
    first, second = split_halves(labels, seed=0)
    assert not set(first) & set(second) and len(first) + len(second) == 100
    assert abs(labels[first].sum() - labels[second].sum()) <= 1
    assert (split_halves(labels, seed=0)[0] == first).all()
    prompts = prompt_items(first, labels, 20, seed=0)
    assert set(prompts) <= set(first) and len(prompts) == 20
    assert labels[prompts].sum() == round(20 * labels[first].mean())
