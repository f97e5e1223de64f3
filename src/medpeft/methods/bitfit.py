"""BitFit: only the bias terms train (for a ResNet: the BatchNorm weights and biases).

Zaken, Ravfogel & Goldberg 2022, "BitFit: Simple Parameter-efficient Fine-tuning for
Transformer-based Masked Language-models" (ACL). In a ViT every existing bias trains: the patch
embedding's, and in each block the two LayerNorms', qkv's, the attention projection's, fc1's and
fc2's (7d + mlp per block; 102,144 in ViT-B/16). timm's ResNet convolutions have no bias, so
for ResNets medpeft follows the convention Dutt et al. 2023 ("Parameter-Efficient Fine-Tuning
for Medical Image Analysis: The Missed Opportunity") use for CNNs: the affine weight and bias of
every BatchNorm train instead (2 x 26,560 = 53,120 in ResNet-50). Why: about 0.1% of the
weights, nothing added at inference, and a strong baseline when labelled data are scarce.

Nothing is injected; the method is a name filter over the model's own tensors. Merging is
therefore a no-op and ``unload`` returns the model as it is.

Written here because HF peft has no BitFit: peft's ``bias="all"`` trains biases only next to
LoRA, and its BEFT tuner adds a new bias vector to chosen Linear layers (value projections by
default) instead of training the existing bias terms.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..models.backbones import family_of
from ._base import MethodConfig, SelectionMethod, register_method


@dataclass
class BitFitConfig(MethodConfig):
    pass  # BitFit has no options: every bias (ViT) or BatchNorm affine (ResNet) trains


def batchnorm_names(model: nn.Module) -> list[str]:
    """Module names of every BatchNorm layer (``bn1``, ``layer1.0.bn3``, ``layer1.0.downsample.1``...)."""
    return [name for name, module in model.named_modules() if isinstance(module, _BatchNorm)]


@register_method
class BitFit(SelectionMethod):
    name = "bitfit"
    config_class = BitFitConfig
    families = ("vit", "resnet", "unet")
    summary = "BitFit: only bias terms train (ResNet: BatchNorm weight and bias)"
    family_summary = {"unet": "BitFit: every bias term of the UNet"}
    diffusion_lr = 3e-3
    paper = "Zaken et al. 2022 (ACL); BatchNorm variant for CNNs as in Dutt et al. 2023"

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        if family_of(model) in ("vit", "unet"):
            return [r"\.bias$"]
        names = batchnorm_names(model)
        if not names:
            raise ValueError(f"BitFit on a CNN trains its BatchNorm layers; {type(model).__name__} has none")
        return [rf"^{re.escape(name)}\.(weight|bias)$" for name in names]
