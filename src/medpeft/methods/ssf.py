"""SSF: a learned per-channel scale and shift after every linear, convolution and norm op.

Lian et al. 2022, "Scaling & Shifting Your Features: A New Baseline for Efficient Model
Tuning" (NeurIPS). Each op's output ``y`` becomes ``γ ⊙ y + β`` with ``γ`` (``ssf_scale``)
starting at 1 and ``β`` (``ssf_shift``) at 0, so the adapted model starts as the base model.
Why: about 0.24% of a ViT-B's weights train, and the factors merge into the weights afterwards,
so inference costs nothing extra.

Where, following the official code (dongzelian/SSF, ``models/vision_transformer.py``):
- ViT: the patch-embedding conv, and in every block norm1, qkv (3d channels), the attention
  projection, norm2, fc1 (mlp channels) and fc2 (plus the final ``norm`` and any other
  LayerNorm when the model has them): 2 x (7d + mlp) per block, 204,288 in ViT-B/16. The task
  head (``fc_norm`` + classifier) trains in full anyway, so it gets no SSF.
- ResNet (no official code): after every BatchNorm. Not after the convolutions: each conv feeds
  a BatchNorm straight away, and in training mode BatchNorm removes a per-channel shift exactly
  and a per-channel scale up to its ``eps``, so conv-side factors would get (near-)zero
  gradients and only inflate the count. Scaling and shifting BatchNorm outputs is the same
  function family as tuning the BatchNorm affines (and as FiLM after every BatchNorm).

Merging is exact: ``W' = γ ⊙ W`` row-wise (output channel) and ``b' = γ ⊙ b + β``; a layer
without a bias gets a zero one first (timm's ViT and ResNet layers that SSF touches all have
biases, so ``unload`` leaves the original state-dict keys).

How: each targeted module keeps its identity, parameters and names; its class is switched to
a subclass (``nn.Linear`` -> :class:`SSFLinear`...) whose ``forward`` applies the scale and
shift, the same technique ``torch.nn.utils.parametrize`` uses. ``unload`` switches it back.

Written here because HF peft has no SSF ((IA)^3 is the nearest: a scale only, on keys, values
and the MLP, with no shift and no norms).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.layers import LayerNorm as TimmLayerNorm

from ..models.backbones import family_of, head_names
from ._base import MethodConfig, WrapperMethod, register_method


@dataclass
class SSFConfig(MethodConfig):
    init_std: float = 0.0  # std of a normal init around γ=1, β=0 (official code: 0.02; 0 = exact identity at start)

    def __post_init__(self):
        if not self.init_std >= 0.0:
            raise ValueError(f"SSF init_std must be >= 0, got {self.init_std}")


class ScaleShift:
    """Mixin for an op whose output is scaled and shifted per output channel (see SSF_CLASSES)."""

    channel_dim: int = -1  # where the channels are in the output: -1 for (..., C), 1 for (B, C, H, W)

    def _per_channel(self, v: torch.Tensor) -> torch.Tensor:
        return v if self.channel_dim == -1 else v.view(-1, 1, 1)  # (C,) or (C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.ssf_merged:
            return y
        return y * self._per_channel(self.ssf_scale) + self._per_channel(self.ssf_shift)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold γ, β into the op: W <- γ ⊙ W (per output channel), b <- γ ⊙ b + β."""
        if self.ssf_merged:
            return
        if self.bias is None:  # the shift needs somewhere to go
            self.bias = nn.Parameter(torch.zeros_like(self.ssf_shift), requires_grad=False)
        self.weight.mul_(self._along_weight(self.ssf_scale))
        self.bias.mul_(self.ssf_scale).add_(self.ssf_shift)
        self.ssf_merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.ssf_merged:
            return
        if (self.ssf_scale == 0).any():
            raise ValueError("cannot unmerge SSF: a scale is exactly zero, the original weights are lost")
        self.bias.sub_(self.ssf_shift).div_(self.ssf_scale)
        self.weight.div_(self._along_weight(self.ssf_scale))
        self.ssf_merged = False

    def _along_weight(self, v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *[1] * (self.weight.dim() - 1))  # weight rows are output channels

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ssf{' (merged)' if self.ssf_merged else ''}"


class SSFLinear(ScaleShift, nn.Linear):
    pass


class SSFConv2d(ScaleShift, nn.Conv2d):
    channel_dim = 1


class SSFLayerNorm(ScaleShift, TimmLayerNorm):
    pass


class SSFTorchLayerNorm(ScaleShift, nn.LayerNorm):
    pass


class SSFBatchNorm2d(ScaleShift, nn.BatchNorm2d):
    channel_dim = 1


# exact base class -> its SSF subclass
SSF_CLASSES = {cls.__bases__[1]: cls for cls in (SSFLinear, SSFConv2d, SSFLayerNorm, SSFTorchLayerNorm, SSFBatchNorm2d)}


def add_scale_shift(layer: nn.Module, init_std: float = 0.0) -> None:
    """Turn ``layer`` into its SSF subclass in place, with γ = 1 and β = 0 (± init_std noise)."""
    cls = SSF_CLASSES.get(type(layer))
    if cls is None:
        supported = ", ".join(base.__name__ for base in SSF_CLASSES)
        raise ValueError(f"SSF supports {supported}; got {type(layer).__name__}")
    if layer.weight is None:
        raise ValueError(f"SSF folds into a layer's weight; {layer} has none (elementwise_affine=False?)")
    channels, factory = layer.weight.shape[0], dict(device=layer.weight.device, dtype=layer.weight.dtype)
    layer.__class__ = cls
    layer.ssf_scale = nn.Parameter(torch.ones(channels, **factory))  # γ: (C,)
    layer.ssf_shift = nn.Parameter(torch.zeros(channels, **factory))  # β: (C,)
    if init_std > 0:
        nn.init.normal_(layer.ssf_scale, mean=1.0, std=init_std)
        nn.init.normal_(layer.ssf_shift, std=init_std)
    layer.ssf_merged = False


def remove_scale_shift(layer: ScaleShift) -> nn.Module:
    """Merge, then give ``layer`` back its original class without the SSF parameters."""
    layer.merge()
    del layer.ssf_scale, layer.ssf_shift, layer.ssf_merged
    layer.__class__ = type(layer).__bases__[1]
    return layer


def ssf_targets(model: nn.Module) -> list[nn.Module]:
    """The ops that get SSF: ViT linears, convs and LayerNorms; ResNet BatchNorms; never the head."""
    kinds = (nn.Linear, nn.Conv2d, nn.LayerNorm) if family_of(model) == "vit" else (nn.BatchNorm2d,)
    head = set(head_names(model))
    return [module for name, module in model.named_modules()
            if isinstance(module, kinds) and name.split(".")[0] not in head]


@register_method
class SSF(WrapperMethod):
    name = "ssf"
    config_class = SSFConfig
    families = ("vit", "resnet")
    layer_types = (ScaleShift,)
    summary = "SSF: per-channel scale and shift after every linear/conv/norm op (ResNet: every BN)"
    paper = "Lian et al. 2022, 'Scaling & Shifting Your Features' (NeurIPS)"

    def inject(self, model: nn.Module) -> nn.Module:
        if any(isinstance(m, ScaleShift) for m in model.modules()):
            raise ValueError("SSF is already applied to this model")
        targets = ssf_targets(model)
        if not targets:
            raise ValueError(f"SSF found no linear, conv or norm layers to adapt in {type(model).__name__}")
        for layer in targets:
            add_scale_shift(layer, self.config.init_std)
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"\.ssf_(scale|shift)$"]

    def unload(self, model: nn.Module) -> nn.Module:
        for layer in self.layers(model):
            remove_scale_shift(layer)
        return model
