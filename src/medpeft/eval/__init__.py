"""Evaluation: metrics (AUROC, accuracy, macro-F1, bootstrap CI), model scoring, run re-scoring."""
from .evaluate import evaluate, predict, probabilities
from .metrics import bootstrap_ci, compute_metrics, macro_auroc, per_label_auroc

__all__ = ["evaluate", "predict", "probabilities", "bootstrap_ci", "compute_metrics",
           "macro_auroc", "per_label_auroc"]
