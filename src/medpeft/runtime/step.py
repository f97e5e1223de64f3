"""One optimiser step that refuses a non-finite loss, shared by fine-tuning and MAE pretraining.

Checking before ``backward()`` means a NaN never reaches the weights or the optimiser state,
so the checkpoint of the previous epoch is still the last good one and ``--resume`` can
continue from it with a lower learning rate or gradient clipping.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is left in place."""


def optimizer_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                   clip_grad: float | None, *, epoch: int, step: int, run) -> None:
    """backward + optional clipping + step; raises :class:`TrainingDiverged` (logged in ``run``)
    if the loss is not finite. ``epoch`` and ``step`` count from 0."""
    if not torch.isfinite(loss):
        message = (f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; stopped. "
                   f"The last good checkpoint ({'none yet' if epoch == 0 else f'epoch {epoch}'}) "
                   f"is kept in {run.path}. Lower the learning rate (--blr/--lr) or set "
                   "--clip-grad, then --resume.")
        run.log("diverged: " + message)
        raise TrainingDiverged(message)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad is not None:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip_grad)
    optimizer.step()
