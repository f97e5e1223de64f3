"""Paired differences between the two foundation models of experiments/table1: for each method
and column, the plateau MAE's test AUROC minus the 20-epoch MAE's on the same label subset and
the same test items, with the paired 95% CI of medpeft's reports
(``medpeft.studies.paired.paired_difference``: bootstrap over subsets and test items together).

    .venv/bin/python docs/results/table1/pair_backbones.py docs/results/table1/results.csv

A study report pairs each method with the baseline *method* of its backbone; this pairs the
backbones, which the report does not do yet. Run from the repository root (the run folders in
results.csv are relative to it).
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

from medpeft.studies.grid import load_predictions
from medpeft.studies.paired import paired_difference

OLD, NEW = "MAE 20 epochs (demo)", "MAE to plateau (pooled)"


def main(path: str) -> None:
    runs = defaultdict(dict)  # (dataset, fraction, method) -> backbone -> {subset: run_dir}
    for row in csv.DictReader(open(path)):
        unit = (row["seed"], row.get("subset", ""))
        runs[(row["dataset"], row["fraction"], row["label"])].setdefault(row["backbone"], {})[unit] = row["run_dir"]
    print("dataset,fraction,method,n_units,delta,ci_low,ci_high,significant")
    for (dataset, fraction, method), by in sorted(runs.items()):
        if OLD not in by or NEW not in by:
            continue
        units = sorted(set(by[OLD]) & set(by[NEW]))
        new = [load_predictions(by[NEW][u]) for u in units]
        old = [load_predictions(by[OLD][u]) for u in units]
        result = paired_difference(new, old, n_bootstrap=1000, seed=0)
        low, high = result.ci if result.ci else (float("nan"), float("nan"))
        print(f"{dataset},{fraction},{method},{result.n_units},{100 * result.delta:+.1f},{100 * low:+.1f},"
              f"{100 * high:+.1f},{str(result.significant).lower()}")


if __name__ == "__main__":
    main(sys.argv[1])
