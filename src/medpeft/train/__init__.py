"""Fine-tuning: configs, the training loop, optimiser/schedule, run assembly."""
from .config import DataConfig, RunConfig, TrainConfig
from .loop import finetune
from .step import TrainingDiverged

__all__ = ["DataConfig", "RunConfig", "TrainConfig", "TrainingDiverged", "finetune"]
