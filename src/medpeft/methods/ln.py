"""LayerNorm tuning: only the affine weight and bias of every LayerNorm train (plus the head).

Basu, Massiceti, Hu & Feizi 2024, "Strong Baselines for Parameter Efficient Few-Shot
Fine-tuning" (AAAI), call it LN-Tune and find it an extremely strong few-shot baseline for
ViTs pre-trained with supervised and self-supervised objectives; Zhao et al. 2024, "Tuning
LayerNorm in Attention: Towards Efficient Multi-Modal LLM Finetuning" (ICLR), reach the same
conclusion for multimodal LLMs. In a timm ViT that is norm1 and norm2 of every block (2d
each: 4d per block, 36,864 in ViT-B/16), the final ``norm`` when the model has one, and
``fc_norm``, which medpeft's avg-pool ViTs use instead of ``norm`` and which trains with the
head anyway. Why: the fewest weights of any method here that still reach inside every block
(about 0.04% of ViT-B), and nothing is added at inference.

Nothing is injected; the method is a name filter over the model's own tensors (like BitFit),
so merging is a no-op and ``unload`` returns the model as it is. ViTs only: a ResNet has no
LayerNorm; its normalisation-affine counterpart is ``bitfit`` on ResNets (every BatchNorm's
weight and bias).

Written here because HF peft's LN tuner (``LNTuningConfig``) trains copies of the LayerNorm
modules under new names (as ``modules_to_save`` does) instead of the model's own tensors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from ._base import MethodConfig, SelectionMethod, register_method


@dataclass
class LayerNormTuningConfig(MethodConfig):
    pass  # no options: every LayerNorm's weight and bias trains


def layernorm_names(model: nn.Module) -> list[str]:
    """Module names of every LayerNorm (``blocks.0.norm1``, ..., ``fc_norm``); timm's subclass nn.LayerNorm."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.LayerNorm)]


@register_method
class LayerNormTuning(SelectionMethod):
    name = "ln"
    config_class = LayerNormTuningConfig
    families = ("vit",)
    summary = "LayerNorm tuning: the weight and bias of every LayerNorm train"
    paper = "Basu et al. 2024 (AAAI), LN-Tune; Zhao et al. 2024 (ICLR), 'Tuning LayerNorm in Attention'"

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        names = layernorm_names(model)
        if not names:
            raise ValueError(f"LayerNorm tuning trains LayerNorm layers; {type(model).__name__} has none")
        return [rf"^{re.escape(name)}\.(weight|bias)$" for name in names]
