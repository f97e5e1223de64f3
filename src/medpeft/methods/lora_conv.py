"""lora-conv: HF peft's LoRA on a ResNet's convolutions (by default each bottleneck's 3x3 conv).
Shared peft code: ``_peft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._base import register_method
from .lora_qkv import PeftLoRA, PeftLoRAConfig


@dataclass
class LoRAConvConfig(PeftLoRAConfig):
    target_modules: tuple[str, ...] = ("conv2",)  # module names peft adapts: each bottleneck's 3x3 conv


@register_method
class LoRAConv(PeftLoRA):
    """LoRA on a ResNet's convolutions: A is a k x k conv to ``rank`` channels, B a 1x1 conv back.

    By default only each bottleneck's 3x3 ``conv2`` (16 in ResNet-50): the spatial convs, the
    same places TSA puts its adapters, so the two are comparable; ``target_modules`` can add
    ``conv1``, ``conv3`` or ``downsample.0``.
    """

    name = "lora-conv"
    config_class = LoRAConvConfig
    families = ("resnet",)
    exclude_modules = None
    summary = "LoRA (HF peft) on each ResNet bottleneck's 3x3 conv (rank-r conv pair)"
    paper = "Hu et al. 2021, LoRA (ICLR 2022); conv form as implemented by HF peft"
