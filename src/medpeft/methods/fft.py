"""Full fine-tuning: every weight trains (the baseline both papers compare PEFT against)."""
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
    summary = "full fine-tuning: every weight trains"
    paper = "baseline in Dutt et al. 2023 and Lian et al. (MED-PEFT) 2024"

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"."]
