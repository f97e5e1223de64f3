"""DiffFit (Xie et al. 2023) on the diffusion UNet: the bias terms, the normalisation layers and a
learnable scale gamma (a scalar, initialised to 1) on the output of every attention (self and
cross) and every transformer feed-forward branch.

DiffFit was defined on DiT; placing gamma on the attention and feed-forward branches of the
UNet's transformer blocks follows mkshing/DiffFit-pytorch's port to Stable Diffusion (ResNet
branches get none). Written here (no library has it): gamma is a parameter registered on the
branch module plus a forward hook, so the base model's state-dict names do not change.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ._base import Method, MethodConfig, register_method
from .attn import attention_modules
from .norm import norm_patterns

GAMMA = "difffit_gamma"


@dataclass
class DiffFitConfig(MethodConfig):
    pass  # no options


def _scale_output(module: nn.Module, inputs, output):
    return output * getattr(module, GAMMA)


@register_method
class DiffFit(Method):
    name = "difffit"
    config_class = DiffFitConfig
    families = ("unet",)
    summary = "DiffFit: biases, norms and a scale gamma on every attention and feed-forward branch"
    paper = "Xie et al. 2023"
    diffusion_lr = 3e-3

    def inject(self, model: nn.Module) -> nn.Module:
        from diffusers.models.attention import FeedForward

        feed_forward = [name for name, module in model.named_modules() if isinstance(module, FeedForward)]
        for name in attention_modules(model) + feed_forward:
            module = model.get_submodule(name)
            if not hasattr(module, GAMMA):
                module.register_parameter(GAMMA, nn.Parameter(torch.ones(1)))
                module.register_forward_hook(_scale_output)
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"\.bias$", rf"\.{GAMMA}$"] + norm_patterns(model)
