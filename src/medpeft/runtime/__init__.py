"""The runtime under training, evaluation and pretraining: device and precision, seeding, the
lr schedule, progress, the optimiser step, the run directory, metrics and scoring, the run
config and its assembly, and the one epoch loop (:mod:`medpeft.runtime.loop`)."""
from .build import build_base, build_model, eval_loader, load_splits, make_loader, resolve_run_config
from .device import resolve_device
from .precision import autocast_for, resolve_precision
from .loop import EpochEnd, EpochStats, Job, LoopResult, LoopSettings, Plan, heldout_loss, run_epochs
from .metrics import (best_f1_threshold, bootstrap_ci, compute_metrics, decision_thresholds, macro_auroc,
                      one_class_warning, per_label_auroc, subgroup_metrics)
from .rundir import RunDir, RunInUse, run_slug
from .runconfig import DataConfig, RunConfig, TrainConfig
from .scoring import evaluate, predict, probabilities, validation_thresholds
from .seeding import epoch_seed, seed_everything
from .step import TrainingDiverged

__all__ = ["build_base", "build_model", "eval_loader", "load_splits", "make_loader", "resolve_run_config", "autocast_for",
           "resolve_device", "resolve_precision", "EpochEnd", "EpochStats", "Job", "LoopResult",
           "LoopSettings", "Plan", "heldout_loss", "run_epochs", "best_f1_threshold", "bootstrap_ci",
           "compute_metrics", "decision_thresholds", "macro_auroc", "one_class_warning", "per_label_auroc",
           "subgroup_metrics", "RunDir", "RunInUse", "run_slug", "DataConfig", "RunConfig", "TrainConfig",
           "evaluate", "predict", "probabilities", "validation_thresholds", "epoch_seed", "seed_everything",
           "TrainingDiverged"]
