"""Attention tuning: every attention weight of every ViT block trains, nothing else in the blocks
(on the diffusion UNet: q, k, v and out of every self- and cross-attention).

Touvron et al. 2022, "Three things everyone should know about Vision Transformers" (ECCV),
report that fine-tuning only the attention layers (qkv and output projection, weights and
biases) is often enough to adapt a ViT to a new resolution or task, while touching about a
third of the weights (4d^2 + 4d per block: 28.3M of ViT-B/16's 85.8M); Dutt et al. 2023
benchmark it for medical images. Selection only: nothing is injected, so merging is a no-op and ``unload`` returns the
model as it is.

Written here because HF peft has no selection-only tuner (its ``modules_to_save`` would train
copies of the modules under new names instead of the model's own tensors).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from ..models.backbones import family_of
from ._base import MethodConfig, SelectionMethod, register_method


@dataclass
class AttentionTuningConfig(MethodConfig):
    pass  # no options: the whole attention module of every block trains


@register_method
class AttentionTuning(SelectionMethod):
    name = "attn"
    config_class = AttentionTuningConfig
    families = ("vit", "unet")
    summary = "attention tuning: qkv and attention projection of every block train"
    family_summary = {"unet": "attention tuning: q, k, v and out of every self- and cross-attention"}
    diffusion_lr = 5e-4
    paper = "Touvron et al. 2022 (ECCV), 'Three things everyone should know about ViTs'; Dutt et al. 2023"

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        if family_of(model) == "unet":
            return [rf"^{re.escape(n)}\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$" for n in attention_modules(model)]
        return [r"^blocks\.\d+\.attn\."]  # qkv.{weight,bias}, proj.{weight,bias} (+ q/k norms if the model has them)


def attention_modules(unet: nn.Module) -> list[str]:
    """Module names of every diffusers ``Attention`` (self and cross) of a UNet."""
    from diffusers.models.attention_processor import Attention

    return [name for name, module in unet.named_modules() if isinstance(module, Attention)]
