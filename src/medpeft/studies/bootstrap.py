"""The 95% CI of a cell's seed-averaged macro AUROC: a percentile bootstrap over test items,
each resample drawing the same items for every seed.

A resample is scored as :func:`medpeft.runtime.metrics.macro_auroc` would score the resampled
items, but from the items' draw counts instead of copies (``runtime/auroc.py``, the
Mann-Whitney form with weights on tie groups found once per seed): the same numbers at a few
percent of the cost, which matters at 1000 resamples x seeds x every cell of a study.
"""
from __future__ import annotations

import math
import statistics

import numpy as np

from ..runtime.auroc import columns_of, weighted_macro_auroc

__all__ = ["bootstrap_seed_mean", "columns_of", "weighted_macro_auroc"]


def bootstrap_seed_mean(scores: list[np.ndarray], labels: np.ndarray, task: str, n_bootstrap: int = 1000,
                        seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of the mean over seeds of the macro AUROC. Resample ``b`` draws
    ``numpy.random.default_rng(seed).integers(0, N, N)`` (the b-th call) and scores every seed
    on those items; a resample that loses a class everywhere is drawn again (at most
    3 x ``n_bootstrap`` draws). None when fewer than half the resamples are valid."""
    per_seed = [columns_of(np.asarray(s, dtype=np.float64), labels, task) for s in scores]
    rng = np.random.default_rng(seed)
    n = len(labels)
    values: list[float] = []
    for _ in range(3 * n_bootstrap):
        if len(values) == n_bootstrap:
            break
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        value = statistics.fmean(weighted_macro_auroc(columns, weights) for columns in per_seed)
        if not math.isnan(value):
            values.append(value)
    if len(values) < max(1, n_bootstrap // 2):
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
