"""Label fractions (1%, 10%, 100% of the training labels) that are nested, stratified and seeded.

Every fraction of a split is a prefix of one seeded ordering of that split, so subsets are
nested by construction (1% ⊂ 10% ⊂ 100%) and a given (labels, seed) always yields the same
subset. The ordering is built so that prefixes are stratified:

* it starts with one example of every class (single-label tasks) or one positive of every
  finding that has positives (multi-label), so no class or finding vanishes from a small
  subset — the subset grows past ``fraction * N`` when it must;
* for single-label tasks the rest is a systematic stratified ordering: the j-th of the n_c
  shuffled members of class c gets the key (j + u_c) / n_c (u_c uniform), and sorting by
  key keeps every prefix within one example of the class proportions;
* multi-label sets have no exact stratification for all label combinations; after the
  guaranteed positives the order is a seeded shuffle.

Validation is subsampled only on request (``DataConfig.val_fraction``, applied by
:func:`medpeft.runtime.load_splits`): :func:`validation_indices` draws the same nested subset
from the validation labels and adds, where it is short, the next items of a class (or positives
of a finding) in the same ordering, up to a floor per class. The test split is never subsampled;
see :func:`medpeft.data.load_dataset`.
"""
from __future__ import annotations

import math

import numpy as np

PAPER_FRACTIONS = (0.01, 0.1, 1.0)


def check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
        raise ValueError(f"--fraction must be in (0, 1] (e.g. 0.01, 0.1, 1.0), got {fraction}")
    return fraction


def subset_size(n: int, fraction: float, guaranteed: int = 0) -> int:
    """Items in a fraction of n: rounded, at least one, and at least the guaranteed ones."""
    return min(n, max(1, round(fraction * n), guaranteed))


def nested_order(labels: np.ndarray, task: str, seed: int) -> tuple[np.ndarray, int]:
    """A seeded ordering of all items and how many leading items are guaranteed picks."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if task == "multilabel":
        order = rng.permutation(len(labels))
        return _guarantee_positives(order, labels)
    classes = labels[:, 0]
    keys = np.empty(len(classes), dtype=np.float64)
    first_of_class = []
    for cls in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == cls))
        keys[members] = (np.arange(len(members)) + rng.random()) / len(members)
        first_of_class.append(members[0])
    order = np.lexsort((rng.random(len(keys)), keys))  # ties broken at random
    guaranteed = np.array(sorted(first_of_class, key=lambda i: keys[i]), dtype=np.int64)
    rest = order[~np.isin(order, guaranteed)]
    return np.concatenate([guaranteed, rest]), len(guaranteed)


def _guarantee_positives(order: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int]:
    chosen: list[int] = []
    for column in range(labels.shape[1]):
        if any(labels[i, column] for i in chosen):
            continue
        positives = order[labels[order, column] > 0]
        if len(positives):
            chosen.append(int(positives[0]))
    guaranteed = np.array(chosen, dtype=np.int64)
    rest = order[~np.isin(order, guaranteed)]
    return np.concatenate([guaranteed, rest]), len(guaranteed)


def fraction_indices(labels: np.ndarray, task: str, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of the training items kept at ``fraction`` (nested across fractions)."""
    fraction = check_fraction(fraction)
    if fraction == 1.0:
        return np.arange(len(labels))
    order, guaranteed = nested_order(labels, task, seed)
    return np.sort(order[: subset_size(len(labels), fraction, guaranteed)])


VAL_FRACTION_HELP = ("val_fraction must be a fraction in (0, 1] (e.g. 0.1), 'match' (the training fraction) "
                     "or unset (the whole validation split)")


def resolve_val_fraction(val_fraction: float | str | None, fraction: float) -> float | None:
    """The validation fraction ``val_fraction`` stands for (None: the whole split; ``"match"``:
    the training ``fraction``; a number or number text in (0, 1]); anything else a ValueError."""
    if val_fraction is None:
        return None
    if isinstance(val_fraction, str):
        if val_fraction.strip().lower() == "match":
            return check_fraction(fraction)
        try:
            val_fraction = float(val_fraction)
        except ValueError:
            raise ValueError(f"{VAL_FRACTION_HELP}, got {val_fraction!r}") from None
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)):
        raise ValueError(f"{VAL_FRACTION_HELP}, got {val_fraction!r}")
    value = float(val_fraction)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{VAL_FRACTION_HELP}, got {val_fraction!r}")
    return value


def check_min_per_class(min_per_class: int) -> int:
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, (int, np.integer)) or min_per_class < 0:
        raise ValueError(f"val_min_per_class must be a whole number >= 0 (0: no floor beyond one per class), "
                         f"got {min_per_class!r}")
    return int(min_per_class)


def validation_indices(labels: np.ndarray, task: str, fraction: float, seed: int = 0,
                       min_per_class: int = 5) -> np.ndarray:
    """Sorted indices of the validation items kept at ``fraction``, with a floor per class.

    The subset is :func:`fraction_indices`'s (the same seeded nested ordering, so it is nested
    across fractions for one seed), plus, for every class (single-label) or finding (multi-label,
    positives only) with fewer than ``min_per_class`` items in it, the first items of that class
    in the same ordering until it has that many. A class with fewer items in the split keeps all
    of them. The added items do not depend on the fraction, so the floor keeps the subsets nested.
    """
    if fraction is None or isinstance(fraction, str):
        raise ValueError(f"validation_indices takes a number (resolve_val_fraction turns 'match' into the "
                         f"training fraction), got {fraction!r}")
    fraction = resolve_val_fraction(fraction, 1.0)
    min_per_class = check_min_per_class(min_per_class)
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    order, guaranteed = nested_order(labels, task, seed)
    kept = [order[: subset_size(len(labels), fraction, guaranteed)]]
    if task == "multilabel":
        members = [labels[order, column] > 0 for column in range(labels.shape[1])]
    else:
        members = [labels[order, 0] == cls for cls in np.unique(labels[:, 0])]
    kept += [order[mask][:min_per_class] for mask in members]
    return np.unique(np.concatenate(kept))
