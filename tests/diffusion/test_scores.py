"""The scores on synthetic features: FD is zero for identical sets, and equals its closed form
for a known shift, a known change of spread and covariances with known square roots;
precision/recall and conditional accuracy on cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

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


def test_fd_of_a_doubled_set_is_its_squared_mean_plus_the_trace_of_its_covariance(features):
    """X against 2X: means m and 2m, covariances S and 4S (sample covariances, ddof 1 as np.cov),
    so FD = |m|^2 + Tr(S + 4S - 2 (4 S^2)^(1/2)) = |m|^2 + Tr(S)."""
    shifted = features + np.linspace(-1.0, 1.0, features.shape[1])  # a mean of known size
    mean = shifted.mean(0)
    covariance = np.cov(shifted, rowvar=False, ddof=1)
    expected = mean @ mean + np.trace(covariance)
    assert frechet_distance(shifted, 2 * shifted) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(2 * shifted, shifted) == pytest.approx(expected, rel=1e-9)


def exact_covariance(variances: np.ndarray, n: int = 16) -> np.ndarray:
    """n points whose sample mean is 0 and sample covariance (ddof 1) is exactly diag(variances):
    columns of a Hadamard matrix other than its all-ones one are centred and orthogonal."""
    columns = linalg.hadamard(n)[:, 1:len(variances) + 1].astype(np.float64)
    return columns * np.sqrt(variances * (n - 1) / n)


def test_fd_of_diagonal_covariances_is_the_squared_distance_of_their_square_roots():
    """S_a = diag(a), S_b = diag(b): Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = sum (sqrt a - sqrt b)^2."""
    a, b = np.array([1.0, 4.0, 0.25, 9.0, 2.0]), np.array([4.0, 1.0, 0.25, 0.5, 3.0])
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.3])
    first, second = exact_covariance(a), exact_covariance(b) + shift
    np.testing.assert_allclose(np.cov(second, rowvar=False), np.diag(b), atol=1e-12)
    expected = shift @ shift + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(first, exact_covariance(b)) == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2),
                                                                         rel=1e-9)


def test_fd_of_covariances_that_do_not_commute(features):
    """Two sets with unrelated covariances (S_a S_b not symmetric): the cross term by the symmetric
    route, Tr((S_a S_b)^(1/2)) = Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), from eigendecompositions."""
    rng = np.random.default_rng(2)
    first = features @ rng.normal(size=(8, 8))
    second = rng.normal(size=(300, 8)) @ rng.normal(size=(8, 8)) + 0.5
    cov_a, cov_b = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    assert not np.allclose(cov_a @ cov_b, cov_b @ cov_a)

    def sqrt_psd(matrix):
        values, vectors = np.linalg.eigh(matrix)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T

    root_a = sqrt_psd(cov_a)
    cross = np.trace(sqrt_psd(root_a @ cov_b @ root_a))
    diff = first.mean(0) - second.mean(0)
    expected = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-6)


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
