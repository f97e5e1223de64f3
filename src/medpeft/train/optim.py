"""The optimiser and loss of a fine-tuning run.

Parameter groups come from timm's ``create_optimizer_v2`` (timm's ``param_groups_layer_decay``
when layer decay is on, else ``param_groups_weight_decay``): no weight decay on 1-D tensors
(biases, norm weights, LoRA-free scale/shift vectors) or on the names a model lists in
``no_weight_decay()`` (position embedding, class token), and for ViTs a learning-rate scale of
``layer_decay ** (depth + 1 - layer)`` per block, where the patch embedding is layer 0 and the
head and final norms the last layer (scale 1.0).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2

from ..runtime import TrainConfig


def loss_function(task: str) -> nn.Module:
    return nn.CrossEntropyLoss() if task == "multiclass" else nn.BCEWithLogitsLoss()


def build_optimizer(model: nn.Module, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """timm's optimizer factory: no decay on biases/norms/tokens, layer-wise lr decay for ViTs."""
    layer_decay = train.layer_decay if train.layer_decay < 1.0 and hasattr(model, "blocks") else None
    extra = {"momentum": train.momentum} if train.optimizer == "sgd" else {}
    return create_optimizer_v2(model, opt=train.optimizer, lr=lr,
                               weight_decay=train.weight_decay, layer_decay=layer_decay, **extra)
