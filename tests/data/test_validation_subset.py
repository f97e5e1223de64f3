"""Validation sized to the label budget (issue 26): DataConfig.val_fraction and its floor per class."""
from __future__ import annotations

import numpy as np
import pytest

from medpeft.data.fractions import fraction_indices, resolve_val_fraction, validation_indices
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, resolve_run_config
from medpeft.runtime.build import load_splits, validation_note

from .test_fractions import imbalanced_labels

FRACTIONS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
TINY = "synthetic-cxr?n=96&n_val=48&n_test=64&size=16"  # multilabel, 5 findings


def counts(labels: np.ndarray, task: str) -> np.ndarray:
    """Members of every class (single-label) or positives of every finding (multi-label)."""
    if task == "multilabel":
        return labels.sum(0)
    return np.array([(labels[:, 0] == c).sum() for c in np.unique(labels[:, 0])])


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("floor", [0, 1, 5, 20])
def test_the_floor_holds_for_every_class_or_finding(task, floor):
    labels = imbalanced_labels(task)
    everywhere = counts(labels, task)
    for seed in range(3):
        for fraction in FRACTIONS:
            kept = counts(labels[validation_indices(labels, task, fraction, seed, floor)], task)
            assert (kept >= np.minimum(floor, everywhere)).all(), (fraction, seed, kept)


@pytest.mark.parametrize("task, floor", [("binary", 500), ("multiclass", 50), ("multilabel", 50)])
def test_a_class_with_fewer_items_than_the_floor_keeps_all_of_them(task, floor):
    labels = imbalanced_labels(task)  # binary: ~400 positives; multiclass: a 3-member class; multilabel: 4, 0
    everywhere = counts(labels, task)
    kept = counts(labels[validation_indices(labels, task, 0.01, seed=0, min_per_class=floor)], task)
    rare = everywhere < floor
    assert rare.any() and (~rare).any()
    assert (kept[rare] == everywhere[rare]).all()
    assert (kept[~rare] >= floor).all()


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_nested_across_fractions_and_seeded(task):
    labels = imbalanced_labels(task)
    for seed in (0, 3):
        subsets = [set(validation_indices(labels, task, f, seed, 5)) for f in FRACTIONS]
        for small, large in zip(subsets, subsets[1:]):
            assert small <= large
        assert subsets[-1] == set(range(len(labels)))
        assert subsets == [set(validation_indices(labels, task, f, seed, 5)) for f in FRACTIONS]
    assert set(validation_indices(labels, task, 0.1, 0, 5)) != set(validation_indices(labels, task, 0.1, 1, 5))


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_it_is_the_training_draw_plus_only_what_the_floor_needs(task):
    labels = imbalanced_labels(task)
    for fraction in (0.01, 0.1):
        base = set(fraction_indices(labels, task, fraction, seed=2))
        assert set(validation_indices(labels, task, fraction, 2, 0)) == base
        floored = set(validation_indices(labels, task, fraction, 2, 5))
        assert base <= floored
        if task != "multilabel":  # what is added belongs to classes short of the floor in the plain draw
            short = {c for c in np.unique(labels) if (labels[sorted(base), 0] == c).sum() < 5}
            assert {int(labels[i, 0]) for i in floored - base} <= short
        if fraction == 0.1 and task == "multiclass":  # 200 items: 5 of every class but the 3-member one
            assert {int(labels[i, 0]) for i in floored - base} == {4}


def test_bad_values_are_clear_errors():
    labels = imbalanced_labels("binary")
    for bad in (0, 0.0, 1.5, -0.1, "half", float("nan"), True):
        with pytest.raises(ValueError, match="val_fraction must be a fraction in \\(0, 1\\]"):
            DataConfig(val_fraction=bad)
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match="val_fraction must be a fraction"):
            validation_indices(labels, "binary", bad)
    for bad in ("match", None):
        with pytest.raises(ValueError, match="takes a number"):
            validation_indices(labels, "binary", bad)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="val_min_per_class must be a whole number >= 0"):
            DataConfig(val_min_per_class=bad)
        with pytest.raises(ValueError, match="val_min_per_class"):
            validation_indices(labels, "binary", 0.1, min_per_class=bad)
    with pytest.raises(ValueError, match="val_fraction"):
        RunConfig.from_dict({"data": {"val_fraction": "half"}})


def test_match_is_the_training_fraction_and_text_is_read():
    assert DataConfig(fraction=0.1, val_fraction="match").validation_fraction == 0.1
    assert DataConfig(fraction=0.01, val_fraction=" Match ").val_fraction == "match"
    assert DataConfig(val_fraction="0.25").val_fraction == 0.25  # the command line gives text
    assert RunConfig.from_dict({"data": {"val_fraction": 0.5}}).data.val_fraction == 0.5
    assert DataConfig().validation_fraction is None
    assert resolve_val_fraction(None, 0.1) is None and resolve_val_fraction("match", 0.05) == 0.05
    config = DataConfig(fraction=0.1, val_fraction="match")
    assert RunConfig.from_dict(RunConfig(data=config).to_dict()).data == config  # round trip through config.yaml


def splits_for(**data):
    config, _ = resolve_run_config(RunConfig(data=DataConfig(spec=TINY, **data),
                                             backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=4)))
    return load_splits(config.data, config.backbone)


def test_load_splits_cuts_validation_only_when_asked():
    whole = splits_for(fraction=0.1)
    assert len(whole.val) == 48 and validation_note(whole) is None and whole.notes == []
    matched = splits_for(fraction=0.1, val_fraction="match")
    labels = whole.val.labels
    expected = validation_indices(labels, "multilabel", 0.1, seed=0, min_per_class=5)
    assert len(matched.val) == len(expected) < 48
    assert np.array_equal(matched.val.labels, labels[expected])
    assert (matched.val.labels.sum(0) >= np.minimum(5, labels.sum(0))).all()
    assert validation_note(matched) == (f"validation: {len(expected)} of 48 images (val_fraction match = 0.1, "
                                        ">= 5 positives per finding)")
    assert len(matched.test) == len(whole.test) == 64 and np.array_equal(matched.test.labels, whole.test.labels)
    assert np.array_equal(matched.train.labels, whole.train.labels)
    # the same as asking for 0.1 outright; the floor and fraction_seed change it
    assert np.array_equal(splits_for(fraction=0.1, val_fraction=0.1).val.labels, matched.val.labels)
    assert len(splits_for(fraction=0.1, val_fraction="match", val_min_per_class=0).val) < len(matched.val)
    assert len(splits_for(val_fraction=1.0).val) == 48
