"""Norm tuning on the diffusion UNet: only the GroupNorm and LayerNorm scales and shifts train.

One of the generative methods Dutt et al. 2023 compare. Selection only (like BitFit): nothing is
injected. Written here because HF peft has no selection-only tuner. For ViT classifiers the
same idea is ``ln`` (LayerNorm tuning).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from ._base import MethodConfig, SelectionMethod, register_method


@dataclass
class NormTuningConfig(MethodConfig):
    pass  # no options: every GroupNorm and LayerNorm of the UNet trains


def norm_modules(model: nn.Module) -> list[str]:
    """Module names of every GroupNorm and LayerNorm."""
    return [name for name, module in model.named_modules() if isinstance(module, (nn.GroupNorm, nn.LayerNorm))]


def norm_patterns(model: nn.Module) -> list[str]:
    return [rf"^{re.escape(name)}\.(weight|bias)$" for name in norm_modules(model)]


@register_method
class NormTuning(SelectionMethod):
    name = "norm"
    config_class = NormTuningConfig
    families = ("unet",)
    summary = "the GroupNorm and LayerNorm scales and shifts"
    paper = "norm tuning, as compared by Dutt et al. 2023"
    diffusion_lr = 3e-3

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return norm_patterns(model)
