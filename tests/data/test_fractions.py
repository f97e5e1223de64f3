"""Label fractions: nested, stratified, deterministic; val/test never subsampled."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data import load_dataset
from medpeft.data.fractions import fraction_indices

FRACTIONS = (0.01, 0.05, 0.1, 0.5, 1.0)


def imbalanced_labels(task: str, n=2000, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if task == "binary":
        return (rng.random((n, 1)) < 0.2).astype(np.int64)
    if task == "multiclass":  # one class with only 3 members
        labels = rng.integers(0, 4, (n, 1))
        labels[labels == 4] = 0
        labels[:3] = 4
        rng.shuffle(labels)
        return labels
    labels = (rng.random((n, 6)) < [0.3, 0.1, 0.05, 0.01, 0.002, 0.0]).astype(np.int64)
    return labels


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_nested_and_deterministic(task):
    labels = imbalanced_labels(task)
    subsets = [set(fraction_indices(labels, task, f, seed=3)) for f in FRACTIONS]
    for small, large in zip(subsets, subsets[1:]):
        assert small < large
    again = [set(fraction_indices(labels, task, f, seed=3)) for f in FRACTIONS]
    assert subsets == again
    assert set(fraction_indices(labels, task, 0.1, seed=4)) != subsets[2]
    assert subsets[-1] == set(range(len(labels)))
    assert len(subsets[2]) == 200


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_every_class_or_finding_keeps_a_positive(task):
    labels = imbalanced_labels(task)
    for seed in range(5):
        kept = labels[fraction_indices(labels, task, 0.001, seed=seed)]
        if task == "multilabel":
            has_positives = labels.sum(0) > 0
            assert (kept.sum(0)[has_positives] >= 1).all()
        else:
            assert set(np.unique(kept)) == set(np.unique(labels))


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_single_label_prefixes_keep_class_proportions(task):
    labels = imbalanced_labels(task)
    classes, full = np.unique(labels, return_counts=True)
    for fraction in FRACTIONS[1:]:
        kept = labels[fraction_indices(labels, task, fraction, seed=0)][:, 0]
        counts = np.array([(kept == c).sum() for c in classes])
        expected = full * len(kept) / len(labels)
        assert np.all(np.abs(counts - expected) <= 2), (fraction, counts, expected)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_unit_interval(fraction):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        fraction_indices(np.zeros((10, 1), np.int64), "binary", fraction)


def test_val_and_test_never_subsampled(medmnist_root):
    full = load_dataset("medmnist:pneumoniamnist", data_root=medmnist_root)
    small = load_dataset("medmnist:pneumoniamnist", data_root=medmnist_root, fraction=0.01)
    assert len(small.train) == 47 and len(small.val) == len(full.val) and len(small.test) == len(full.test)
    assert "stratified" in small.subset_note
