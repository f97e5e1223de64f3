"""Fine-tuning: a classifier run from its config (:class:`medpeft.runtime.RunConfig`) to a
finished run directory, on the shared epoch loop of :mod:`medpeft.runtime`."""
from .finetuning import ClassifierJob, finetune
from .optim import build_optimizer, loss_function
from .parallel import finetune_parallel

__all__ = ["ClassifierJob", "finetune", "finetune_parallel", "build_optimizer", "loss_function"]
