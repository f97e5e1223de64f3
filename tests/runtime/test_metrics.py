"""Metrics against hand-computed values and MedMNIST evaluator semantics."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.runtime import (TrainingDiverged, best_f1_threshold, bootstrap_ci, compute_metrics, decision_thresholds,
                              one_class_warning)


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
    with pytest.raises(TrainingDiverged, match="NaN"):  # exit 1 from the CLI, as a NaN loss
        compute_metrics(np.array([[np.nan], [0.5]]), np.array([[0], [1]]), "binary", ["p"])


# Validation thresholds. Eight images, five positive; by hand, with decisions `score >= t`:
#   t     0.70  0.60  0.45  0.40  0.35  0.30  0.20  0.10
#   F1+   .333  .571  .750  .889  .800  .909  .833  .769   (positive-class F1)
#   F1-   .600  .667  .750  .857  .667  .800  .500  .000   (negative-class F1)
#   macro .467  .619  .750  .873  .733  .855  .667  .385
HAND_SCORES = np.array([0.10, 0.20, 0.30, 0.35, 0.40, 0.45, 0.60, 0.70])
HAND_LABELS = np.array([0, 0, 1, 0, 1, 1, 1, 1])


def test_the_binary_threshold_maximises_validation_macro_f1_on_a_hand_made_example():
    assert best_f1_threshold(HAND_SCORES, HAND_LABELS, two_class=True) == 0.40
    thresholds = decision_thresholds(HAND_SCORES[:, None], HAND_LABELS[:, None], "binary", ["p"])
    assert thresholds == {"p": 0.40}
    m = compute_metrics(HAND_SCORES[:, None], HAND_LABELS[:, None], "binary", ["p"], thresholds=thresholds)
    assert m["f1_macro"] == pytest.approx((4 / 7 + 2 / 3) / 2)  # at 0.5: only 0.60 and 0.70 called positive
    assert m["acc"] == pytest.approx(5 / 8)
    assert m["f1_macro_at_val_threshold"] == pytest.approx((8 / 9 + 6 / 7) / 2)
    assert m["acc_at_val_threshold"] == pytest.approx(7 / 8)  # only the positive at 0.30 is missed
    assert m["thresholds"] == {"p": 0.40}


def test_a_multilabel_threshold_maximises_that_labels_own_f1():
    scores = np.stack([HAND_SCORES, HAND_SCORES], axis=1)
    labels = np.stack([HAND_LABELS, 1 - HAND_LABELS], axis=1)
    thresholds = decision_thresholds(scores, labels, "multilabel", ["a", "b"])
    assert thresholds["a"] == 0.30  # positive-class F1 .909, where the binary macro-F1 picks 0.40
    # "b" is "a" inverted (its 3 positives score low): the best its positive F1 can do is to call
    # every image positive, F1 = 2·3 / (2·3 + 5) = 6/11 (t=0.20 gives 4/10, t=0.35 gives 2/8)
    assert thresholds["b"] == 0.10
    m = compute_metrics(scores, labels, "multilabel", ["a", "b"], thresholds=thresholds)
    assert m["f1_macro_at_val_threshold"] == pytest.approx((10 / 11 + 6 / 11) / 2)


def test_the_chosen_threshold_is_the_best_of_every_candidate_by_scikit_learn():
    from sklearn.metrics import f1_score
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 60)
    scores = np.round(np.clip(0.25 * truth + rng.random(60) * 0.75, 0, 1), 2)  # rounded: ties in the scores
    for two_class in (True, False):
        chosen = best_f1_threshold(scores, truth, two_class=two_class)
        average = "macro" if two_class else "binary"
        f1 = {t: f1_score(truth, scores >= t, average=average, labels=[0, 1] if two_class else None)
              for t in np.unique(scores)}
        assert f1[chosen] == pytest.approx(max(f1.values()))


def test_threshold_ties_go_to_the_one_closest_to_half_and_one_class_labels_keep_half():
    # positive F1 2/3 both at t=0.9 (one of two positives, no false positive) and at t=0.3 (all positive)
    scores, truth = np.array([0.3, 0.35, 0.8, 0.9]), np.array([1, 0, 0, 1])
    assert best_f1_threshold(scores, truth, two_class=False) == 0.3
    assert best_f1_threshold(scores, np.zeros(4, dtype=int), two_class=False) == 0.5
    assert best_f1_threshold(scores, np.ones(4, dtype=int), two_class=True) == 0.5


def test_multiclass_keeps_argmax_and_has_no_thresholds():
    labels = np.array([[0], [1], [2], [2]])
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    assert decision_thresholds(scores, labels, "multiclass", ["x", "y", "z"]) is None
    m = compute_metrics(scores, labels, "multiclass", ["x", "y", "z"], thresholds=None)
    assert "thresholds" not in m and "acc_at_val_threshold" not in m
    assert m["one_class"] is False and m["one_class_labels"] == []


def test_a_constant_predictor_is_flagged():
    labels = np.array([[0], [1], [1], [0], [1]])
    constant = np.full((5, 1), 0.3)  # every image negative at 0.5
    m = compute_metrics(constant, labels, "binary", ["pneumonia"],
                        thresholds=decision_thresholds(constant, labels, "binary", ["pneumonia"]))
    assert m["one_class"] is True and m["one_class_labels"] == ["pneumonia"]
    assert m["acc"] == pytest.approx(0.4)  # the negative share
    assert m["thresholds"] == {"pneumonia": 0.3}  # the only candidate: every image positive
    assert m["one_class_at_val_threshold"] is True and m["one_class_labels_at_val_threshold"] == ["pneumonia"]
    warning = one_class_warning(m, "binary")
    assert "every test image the same decision for pneumonia at threshold 0.5" in warning
    assert "--min-steps" in warning

    varied = np.array([[0.2], [0.7], [0.6], [0.4], [0.3]])
    m = compute_metrics(varied, labels, "binary", ["pneumonia"], thresholds={"pneumonia": 0.5})
    assert m["one_class"] is False and m["one_class_at_val_threshold"] is False
    assert one_class_warning(m, "binary") == ""

    multilabel = compute_metrics(np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.4]]), np.array([[1, 0], [0, 1], [1, 0]]),
                                 "multilabel", ["a", "b"])
    assert multilabel["one_class_labels"] == ["b"]  # "a" is split; "b" is never above 0.5

    multiclass = compute_metrics(np.array([[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]]), np.array([[0], [1], [0]]),
                                 "multiclass", ["x", "y"])
    assert multiclass["one_class_labels"] == ["y"]  # argmax gives every image class y
    assert "y by argmax" in one_class_warning(multiclass, "multiclass")


def test_thresholds_must_cover_every_label():
    with pytest.raises(ValueError, match=r"missing for label\(s\) \['b'\]"):
        compute_metrics(np.array([[0.2, 0.4], [0.7, 0.1]]), np.array([[0, 1], [1, 0]]), "multilabel", ["a", "b"],
                        thresholds={"a": 0.5})
