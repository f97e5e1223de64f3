"""Tiny fine-tuning configs shared by the new loop tests (seconds per run on a CPU)."""
from __future__ import annotations

from rich.console import Console

from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig

QUIET = Console(quiet=True)
TINY_DATA = "synthetic-cxr?n=96&n_val=48&n_test=64&size=16"  # multilabel, 5 findings; 3 steps of 32
TINY_VIT = BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.1, timm_kwargs={"depth": 2})
# live residual branches (tests/methods/conftest.py): timm's zero_init_last would leave a random
# ResNet's bottlenecks closed to every method that does not train bn3
TINY_RESNET = BackboneConfig("resnet50", img_size=32, drop_path=0.0, timm_kwargs={"zero_init_last": False})


def tiny_run(method: str = "lora", backbone: BackboneConfig = TINY_VIT, epochs: int = 2,
             data: str = TINY_DATA, **train) -> RunConfig:
    return RunConfig(data=DataConfig(spec=data), backbone=backbone, method=method,
                     train=TrainConfig(**{"epochs": epochs, "batch_size": 32, "n_bootstrap": 0, **train}))
