"""Evaluation of saved runs: rebuild a run's model from its directory and score it on its own
test split or on another dataset with the same labels (``run``), predict on image files with it
(``predict``, decisions by ``outputs``), show where it looked (``explain``), and export it
(merged where its method merges) as a plain timm model for inference (``export``)."""
from .explain import EXPLAINERS, explain, overlay
from .export import Export, export_run, load_exported, read_export_card
from .outputs import RunOutputs
from .predict import PredictConfig, PredictSummary, RunPredictor, gather_images, predict_files
from .evaluate import check_labels, evaluate_run, load_run_model, run_thresholds

__all__ = ["EXPLAINERS", "explain", "overlay", "Export", "export_run", "load_exported", "read_export_card",
           "RunOutputs", "PredictConfig", "PredictSummary", "RunPredictor", "gather_images", "predict_files",
           "check_labels", "evaluate_run", "load_run_model", "run_thresholds"]
