"""Result records: one finished run (one seed of one study cell) as the study engine hands it to
the reports, and the few functions that read metrics out of it.

A record is a plain dict::

    {"dataset": "PneumoniaMNIST", "fraction": 0.01, "method": "lora", "label": "LoRA r=8",
     "backbone": "vit_tiny", "seed": 0, "variant": {"rank": 8}, "run_dir": "runs/...",
     "metrics": {...}}   # the run's metrics.json without "history", plus the torch thread
                         # counts that trained it ("threads", "interop_threads": trials.thread_setup)

Every metric a report shows is read through the accessors below, in this one place, so a
renamed key in ``metrics.json`` is one edit here.
"""
from __future__ import annotations

import math

REQUIRED = ("dataset", "fraction", "method", "label", "backbone", "seed", "metrics")
METRICS = ("auroc", "f1")  # the metrics a report tabulates and plots
MIN_STEPS = 50  # fewer optimiser steps than this and a run is not a result (the project's rule)


def test_split(record: dict) -> dict:
    return record["metrics"]["test"]


def auroc(record: dict) -> float:
    """Test macro AUROC."""
    return _number(test_split(record).get("auroc"))


def f1(record: dict) -> float:
    """Test macro-F1 at the per-label threshold chosen on validation, else at 0.5 / argmax."""
    test = test_split(record)
    return _number(test.get("f1_macro_at_val_threshold", test.get("f1_macro")))


def f1_at_val_threshold(record: dict) -> bool:
    """Whether :func:`f1` is the validation-threshold F1 (False: the fixed 0.5 / argmax F1)."""
    return "f1_macro_at_val_threshold" in test_split(record)


def acc(record: dict) -> float:
    """Test accuracy, at the validation threshold when the run has it."""
    test = test_split(record)
    return _number(test.get("acc_at_val_threshold", test.get("acc")))


def val_auroc(record: dict) -> float:
    """Validation macro AUROC at the run's best epoch (what a study selects on); NaN when the
    record has none (older metrics.json)."""
    return _number((record["metrics"].get("val") or {}).get("auroc"))


def auroc_ci95(record: dict) -> tuple[float, float] | None:
    """The run's own bootstrap interval of its test AUROC, if it computed one."""
    ci = test_split(record).get("auroc_ci95")
    if not ci or any(_number(v) != _number(v) for v in ci):  # missing or NaN
        return None
    return float(ci[0]), float(ci[1])


def one_class(record: dict) -> bool:
    """The run gives every test image one decision for a label (then the cell is not a result),
    at the decisions its accuracy and F1 use: the validation thresholds where it has them."""
    test = test_split(record)
    return bool(test.get("one_class_at_val_threshold", test.get("one_class", False)))


def steps(record: dict) -> int | None:
    """Optimiser steps the run took (None when metrics.json does not say)."""
    value = record["metrics"].get("steps")
    return None if value is None else int(value)


def trainable_share(record: dict) -> float | None:
    """Trainable parameters as a fraction of all parameters."""
    metrics = record["metrics"]
    if not metrics.get("total_params"):
        return None
    return metrics["trainable_params"] / metrics["total_params"]


def still_improving(record: dict) -> bool:
    """The run's best validation was at its last epoch (``best_epoch`` == ``epochs_run``, both
    1-based in metrics.json; the last epoch is always validated): it was stopped while still
    improving. False when metrics.json does not say."""
    metrics = record["metrics"]
    best, run = metrics.get("best_epoch"), metrics.get("epochs_run")
    return best is not None and run is not None and int(best) >= int(run)


def threads(record: dict) -> tuple:
    """The torch thread counts that trained the run (``threads``, ``interop_threads``; a number,
    or ``"2, then 1"`` for a run resumed under another count): results repeat bit for bit only at
    the same counts (docs/studies.md, "What repeats exactly"). (None, None) for a run recorded
    before they were (or copied from another study)."""
    metrics = record["metrics"]
    return metrics.get("threads"), metrics.get("interop_threads")


METRIC_OF = {"auroc": auroc, "f1": f1}


def not_a_result(record: dict) -> list[str]:
    """Why this run is not a result (empty when it is one): too few steps, one-class."""
    reasons = []
    taken = steps(record)
    if taken is not None and taken < MIN_STEPS:
        reasons.append("steps")
    if one_class(record):
        reasons.append("one_class")
    return reasons


def check_records(records: list[dict]) -> list[dict]:
    """The records, checked: required keys, a fraction in (0, 1], one record per cell, seed and label subset."""
    seen = set()
    for index, record in enumerate(records):
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            raise ValueError(f"result record {index} lacks {', '.join(missing)}; every record needs "
                             f"{', '.join(REQUIRED)} (see medpeft.studies.records)")
        if "test" not in record["metrics"]:
            raise ValueError(f"result record {index} ({record['label']}): metrics has no 'test' split")
        if not 0.0 < float(record["fraction"]) <= 1.0:
            raise ValueError(f"result record {index}: fraction must be in (0, 1], got {record['fraction']!r}")
        key = (record["label"], record["backbone"], record["dataset"], float(record["fraction"]), record["seed"],
               record.get("subset"))
        if key in seen:
            raise ValueError(f"two result records for {record['label']} / {record['backbone']} on "
                             f"{record['dataset']} at fraction {record['fraction']} with seed {record['seed']}"
                             + (f" and label subset {record['subset']}" if "subset" in record else ""))
        seen.add(key)
    return records


ANCHOR_KEYS = ("label", "dataset", "fraction", "metric", "value")


def check_anchors(anchors) -> list[dict]:
    """Published reference figures, checked: ``{"label", "dataset", "fraction", "metric",
    "value"}`` with metric one of :data:`METRICS` and value a fraction in [0, 1] (optional
    ``backbone``)."""
    checked = []
    for index, anchor in enumerate(anchors):
        missing = [key for key in ANCHOR_KEYS if key not in anchor]
        if missing:
            raise ValueError(f"published figure {index} lacks {', '.join(missing)}; give "
                             f"{', '.join(ANCHOR_KEYS)}, e.g. {{'label': 'MedMNIST v2 ResNet-18 (published)', "
                             f"'dataset': 'PneumoniaMNIST', 'fraction': 1.0, 'metric': 'auroc', 'value': 0.944}}")
        metric = "f1" if anchor["metric"] == "f1_macro" else anchor["metric"]
        if metric not in METRICS:
            raise ValueError(f"published figure {anchor['label']!r}: metric must be one of "
                             f"{', '.join(METRICS)}, got {anchor['metric']!r}")
        if not 0.0 <= float(anchor["value"]) <= 1.0:
            raise ValueError(f"published figure {anchor['label']!r}: value {anchor['value']} is not in [0, 1]; "
                             f"give it as a fraction (94.4% -> 0.944)")
        checked.append({**anchor, "metric": metric, "fraction": float(anchor["fraction"]),
                        "value": float(anchor["value"]), "backbone": anchor.get("backbone", "")})
    return checked


def _number(value) -> float:
    return math.nan if value is None else float(value)
