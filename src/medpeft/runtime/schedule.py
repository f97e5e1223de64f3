"""Learning-rate schedules, set every iteration: linear warmup, then a half-cycle cosine (MAE's
``util/lr_sched.py``, facebookresearch/mae) or steps (the lr multiplied by ``gamma`` at fixed
fractions of the run: MedMNIST v2's recipe, x0.1 at 50% and 75% of the epochs).

Written as pure functions of the iteration so that resuming needs no scheduler state. Each
parameter group's ``lr_scale`` (layer-wise decay, from timm's ``param_groups_layer_decay``)
multiplies the value.
"""
from __future__ import annotations

import math

import torch


SCHEDULES = ("cosine", "step")


def lr_at(step: float, *, lr: float, min_lr: float, warmup_steps: float, total_steps: float,
          kind: str = "cosine", milestones: tuple[float, ...] = (0.5, 0.75), gamma: float = 0.1) -> float:
    """Learning rate of iteration ``step`` (0-based).

    Unlike MAE, warmup counts the step being taken (``step + 1``), so the very first update is
    not a no-op at lr 0 — which matters when a 1% subset has a single batch per epoch. After the
    warmup: ``cosine`` decays to ``min_lr`` at ``total_steps``; ``step`` multiplies ``lr`` by
    ``gamma`` at each of the ``milestones`` (fractions of ``total_steps``) passed.
    """
    if step < warmup_steps:
        return lr * (step + 1) / (warmup_steps + 1)
    if kind == "step":
        return lr * gamma ** sum(step >= m * total_steps for m in milestones)
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, value: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = value * group.get("lr_scale", 1.0)
