"""FiLM: a learned per-channel scale and shift after every BatchNorm layer of a ResNet.

Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning Layer" (AAAI), used as
a parameter-efficient way to adapt a frozen CNN by Triantafillou et al. 2021 ("Learning a
Universal Template for Few-Shot Dataset Generalization", FLUTE, ICML), which learns a FiLM
scale and shift for every BatchNorm layer of its ResNet, and benchmarked for medical images by
Dutt et al. 2023 ("Parameter-Efficient Fine-Tuning for Medical Image Analysis: The Missed
Opportunity").

Each BatchNorm2d ``y = γ_bn · x̂ + β_bn`` becomes ``y = γ · (γ_bn · x̂ + β_bn) + β`` with
trained ``γ`` (``film_scale``, initialised to 1) and ``β`` (``film_shift``, initialised to 0), so
the adapted model starts as the base model. Every BatchNorm gets one, as in FLUTE: the stem's,
the three of each bottleneck and each downsample's (2 x 26,560 = 53,120 weights in ResNet-50, of
which the stem and the downsamples hold 7,808).

Merging folds FiLM into the BatchNorm's affine: ``γ_bn' = γ·γ_bn``, ``β_bn' = γ·β_bn + β``.
The wrapper subclasses ``nn.BatchNorm2d`` and shares the original's parameters and running
statistics, so base tensors keep their names (``layer1.0.bn1.weight``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ._base import MethodConfig, WrapperMethod, register_method


@dataclass
class FiLMConfig(MethodConfig):
    pass  # FiLM has no options: one scale and one shift per channel of every BatchNorm


def share_batchnorm_state(target: nn.BatchNorm2d, source: nn.BatchNorm2d) -> None:
    """Make ``target`` use ``source``'s affine parameters and running statistics (same tensors)."""
    target.weight, target.bias = source.weight, source.bias
    target.running_mean, target.running_var = source.running_mean, source.running_var
    target.num_batches_tracked = source.num_batches_tracked


class FiLMBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d followed by a per-channel FiLM scale and shift."""

    def __init__(self, bn: nn.BatchNorm2d):
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("FiLM folds into a BatchNorm's affine and needs affine=True with running statistics")
        super().__init__(bn.num_features, eps=bn.eps, momentum=bn.momentum, device="meta")
        share_batchnorm_state(self, bn)
        self.train(bn.training)
        self.film_scale = nn.Parameter(torch.ones_like(bn.weight))  # (C,)
        self.film_shift = nn.Parameter(torch.zeros_like(bn.bias))  # (C,)
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # (B, C, H, W)
        if self.merged:
            return y
        return y * self.film_scale[:, None, None] + self.film_shift[:, None, None]

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.bias.mul_(self.film_scale).add_(self.film_shift)
            self.weight.mul_(self.film_scale)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            if (self.film_scale == 0).any():
                raise ValueError("cannot unmerge FiLM: a scale is exactly zero, the BatchNorm affine is lost")
            self.weight.div_(self.film_scale)
            self.bias.sub_(self.film_shift).div_(self.film_scale)
            self.merged = False

    def plain(self) -> nn.BatchNorm2d:
        """A plain BatchNorm2d with this layer's (merged or not) affine and statistics."""
        bn = nn.BatchNorm2d(self.num_features, eps=self.eps, momentum=self.momentum, device="meta")
        share_batchnorm_state(bn, self)
        return bn.train(self.training)


def batchnorms(model: nn.Module) -> list[tuple[nn.Module, str, nn.BatchNorm2d]]:
    """(parent, attribute, layer) of every BatchNorm2d in the model."""
    found = []
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                found.append((parent, attr, child))
    return found


@register_method
class FiLM(WrapperMethod):
    name = "film"
    config_class = FiLMConfig
    families = ("resnet",)
    layer_types = (FiLMBatchNorm2d,)
    summary = "FiLM: per-channel scale and shift after every BatchNorm (folds into BN when merged)"
    paper = "Perez et al. 2018 (AAAI); as a PEFT method: Triantafillou et al. 2021 (FLUTE), Dutt et al. 2023"

    def inject(self, model: nn.Module) -> nn.Module:
        layers = batchnorms(model)
        if any(isinstance(layer, FiLMBatchNorm2d) for _, _, layer in layers):
            raise ValueError("FiLM is already applied to this model")
        if not layers:
            raise ValueError(f"FiLM needs BatchNorm2d layers; {type(model).__name__} has none")
        for parent, attr, layer in layers:
            setattr(parent, attr, FiLMBatchNorm2d(layer))
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"\.film_(scale|shift)$"]

    def unload(self, model: nn.Module) -> nn.Module:
        self.merge(model)
        for parent, attr, layer in batchnorms(model):
            if isinstance(layer, FiLMBatchNorm2d):
                setattr(parent, attr, layer.plain())
        return model
