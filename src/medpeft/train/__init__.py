"""Fine-tuning: configs, the training loop, optimiser/schedule, run assembly."""
from .config import DataConfig, RunConfig, TrainConfig
from .loop import TrainingDiverged, finetune

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "TrainingDiverged", "finetune"]
