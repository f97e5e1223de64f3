"""Automatic train/val/test splits that keep every group (patient, lesion) in one split.

Images of one patient are alike; when they fall in both training and test splits the test
score measures recognition of the patient, not of the finding. ``csv:`` sources name a group
column (``group=``) and ``folder:`` sources a regex over file paths (``group_regex=``); the
split is then made over groups.

Built on scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`, which deals whole
groups into k folds of near-equal size while keeping each fold's class proportions close to the
whole set's. The k folds are shuffled with the seed, the first ``round(test * k)`` become the
test split, the next ``round(val * k)`` validation, the rest training. k (at most 20, and at most
the number of groups) is chosen so that those fold counts hit ``val`` and ``test`` most closely,
so the defaults 0.1 / 0.2 use 10 folds and are met to within the size of one group per fold.
Same labels, groups and seed: same split.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from ..base import DataError

MAX_FOLDS = 20


def check_split_fractions(val: float, test: float) -> None:
    """The validation and test shares of an automatic split (``folder:`` and ``csv:``, by item or by group)."""
    if not (0.0 < val < 1.0 and 0.0 < test < 1.0 and val + test < 1.0):
        raise ValueError(f"val and test must be fractions in (0, 1) with val + test < 1, "
                         f"got val={val}, test={test}")


def group_split(strata: np.ndarray, groups: np.ndarray, val: float, test: float,
                seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of train/val/test; every group falls in one of them.

    ``strata``: one integer per item (the class; for multilabel rows the rarest positive
    finding); ``groups``: one value per item (patient or lesion id).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_split_fractions(val, test)
    strata, groups = np.asarray(strata), np.asarray(groups)
    codes = np.unique(groups, return_inverse=True)[1].reshape(-1)
    folds, n_test, n_val = fold_plan(val, test, int(codes.max(initial=-1)) + 1)
    fold_of = np.empty(len(codes), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class rarer than the fold count cannot be in every fold
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, members) in enumerate(splitter.split(np.zeros(len(codes)), strata, codes)):
            fold_of[members] = fold
    order = np.random.default_rng(seed).permutation(folds)
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {name: np.flatnonzero(np.isin(fold_of, chosen)) for name, chosen in parts.items()}


def fold_plan(val: float, test: float, n_groups: int) -> tuple[int, int, int]:
    """(k folds, test folds, val folds) meeting the fractions best; fewest folds on ties."""
    best = None
    for folds in range(3, min(MAX_FOLDS, n_groups) + 1):
        n_test, n_val = max(1, round(test * folds)), max(1, round(val * folds))
        if n_test + n_val >= folds:
            continue
        error = abs(n_test / folds - test) + abs(n_val / folds - val)
        if best is None or error < best[0] - 1e-12:
            best = (error, folds, n_test, n_val)
    if best is None:
        raise DataError(f"{n_groups} group(s) are too few to split into train, val and test "
                        f"with val={val} and test={test}: each split needs whole groups")
    return best[1:]


def compile_group_regex(pattern: str, spec_text: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{spec_text}: group_regex={pattern!r} is not a valid regular "
                         f"expression ({err})") from None


def group_of(regex: re.Pattern, text: str) -> str | None:
    """The regex's first capture group in ``text`` (or its whole match); None: no match."""
    match = regex.search(text)
    if match is None:
        return None
    return match.group(1) if regex.groups else match.group(0)
