"""Learning-rate schedule: linear warmup then half-cycle cosine, set every iteration.

The recipe of MAE's ``util/lr_sched.py`` (facebookresearch/mae), written as a pure function
of the iteration so that resuming needs no scheduler state. Each parameter group's
``lr_scale`` (layer-wise decay, from timm's ``param_groups_layer_decay``) multiplies it.
"""
from __future__ import annotations

import math

import torch


def lr_at(step: float, *, lr: float, min_lr: float, warmup_steps: float, total_steps: float) -> float:
    """Learning rate of iteration ``step`` (0-based).

    Unlike MAE, warmup counts the step being taken (``step + 1``), so the very first update is
    not a no-op at lr 0 — which matters when a 1% subset has a single batch per epoch.
    """
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
