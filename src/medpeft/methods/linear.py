"""Linear probing: a frozen backbone, only the head (and a ViT's fc_norm) trains."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ._base import Method, MethodConfig, register_method


@dataclass
class LinearProbeConfig(MethodConfig):
    pass


@register_method
class LinearProbe(Method):
    name = "linear"
    config_class = LinearProbeConfig
    summary = "linear probe: only the classifier head (and ViT fc_norm) trains"
    paper = "baseline in Dutt et al. 2023 and MED-PEFT 2024"
    default_blr = 4e-2  # a lone linear head needs larger steps (MAE probes at blr 0.1 with LARS)

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return []  # the head is always trainable
