"""Evaluation of saved runs: rebuild a run's model from its directory and score it on its own
test split or on another dataset with the same labels."""
from .run import check_labels, evaluate_run, load_run_model

__all__ = ["check_labels", "evaluate_run", "load_run_model"]
