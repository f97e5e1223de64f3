"""Full fine-tuning: every weight trains (the baseline both papers compare PEFT against; on the
diffusion UNet also how the base model is pretrained: Ho et al. 2020, Rombach et al. 2022)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ._base import Method, MethodConfig, register_method


@dataclass
class FullFineTuningConfig(MethodConfig):
    pass


@register_method
class FullFineTuning(Method):
    name = "fft"
    config_class = FullFineTuningConfig
    families = ("vit", "resnet", "unet")
    summary = "full fine-tuning: every weight trains"
    paper = "baseline in Dutt et al. 2023 and Lian et al. (MED-PEFT) 2024; Ho et al. 2020 (DDPM) on the UNet"
    diffusion_lr = 5e-4

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"."]
