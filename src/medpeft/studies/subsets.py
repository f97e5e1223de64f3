"""Label subsets per fraction in a classifier study file (issue 26): the ``subsets`` option.

    fractions: [0.01, 0.1, 1.0]
    seeds: [0, 1, 2]
    subsets: 10                  # every fraction < 1 gets 10 label subsets
    subsets: {0.01: 10, 0.1: 10} # or: K per fraction (fractions not named keep their one subset)

Without ``subsets`` (the default) a fraction has its one label subset as before (``fraction_seed``
0, or the seed with ``vary_subset``) and no cell names a subset, so existing study files keep
their cells and keys. With K subsets at a fraction every (dataset, fraction, backbone, method,
seed) cell becomes K cells, subset ``i`` drawn with ``fraction_seed = i`` (i = 0..K-1): each its
own seeded draw of ``medpeft.data.fractions.fraction_indices`` (stratified, and nested across
fractions for one ``fraction_seed``), and every seed trains on every subset, so the runs of a
report cell are seeds x subsets. Fraction 1.0 always has one subset (all the labels).
"""
from __future__ import annotations


def subset_counts(subsets, fractions: list[float], vary_subset: bool = False) -> dict[float, int | None]:
    """fraction -> its number of label subsets K, or None where the study does not use subsets
    (one subset, no subset index in the cells). ValueError for a bad ``subsets`` value."""
    if subsets is None:
        return {float(f): None for f in fractions}
    if vary_subset:
        raise ValueError("subsets and vary_subset both choose the label subsets; give one of them "
                         "(subsets: K draws K subsets that every seed trains on)")
    if isinstance(subsets, dict):
        counts = {}
        for fraction, count in subsets.items():
            fraction = _fraction(fraction)
            if fraction not in {float(f) for f in fractions}:
                raise ValueError(f"subsets names fraction {fraction:g}, which is not one of the study's "
                                 f"fractions ({', '.join(f'{f:g}' for f in fractions)})")
            if fraction == 1.0:
                raise ValueError("subsets: fraction 1 has one label subset (all the labels); leave it out")
            counts[fraction] = _count(count, f"subsets of fraction {fraction:g}")
        return {float(f): counts.get(float(f)) for f in fractions}
    count = _count(subsets, "subsets")
    return {float(f): None if float(f) == 1.0 else count for f in fractions}


def _fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"subsets: a fraction such as 0.01 must map to a number of subsets, got key {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"subsets: {value!r} is not a fraction such as 0.01") from None


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a whole number of label subsets, at least 1, got {value!r} "
                         "(e.g. subsets: 10, or subsets: {0.01: 10, 0.1: 10})")
    return value


def subset_indices(count: int | None) -> list[int | None]:
    """The subset indices of a fraction's cells: 0..K-1, or [None] without subsets."""
    return [None] if count is None else list(range(count))
