"""LoRA on the query and value slices of a ViT's fused ``qkv`` projection (MED-PEFT semantics).

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", as used by MED-PEFT
(Lian et al. 2024, "Less Could Be Better", via loralib's ``MergedLinear`` with
``enable_lora=[True, False, True]``): the query and value projections get a rank-``r``
update ``(alpha / r) * B @ A``; the key projection stays frozen. ``B`` starts at zero, so the
adapted model equals the base model before the first step.

Written here because HF peft adapts whole modules: its LoRA on timm's fused ``qkv`` factorises
the full 3d-wide output (a different method, offered as ``lora-qkv`` via peft itself).

The wrapper subclasses ``nn.Linear`` and shares the original weight and bias, so the base
tensors keep their names (``blocks.0.attn.qkv.weight``) and pretrained checkpoints and
adapters load the same way before and after injection.

On the diffusion UNet (family ``unet``), LoRA is HF peft's own (``LoraConfig`` +
``inject_adapter_in_model``: its layers and initialisation, B = 0) on diffusers' attention
projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` of every self- and cross-attention, with the
UNet's defaults (rank 4, alpha = rank, no dropout), as Dutt et al. compare it. Its forward and backward pass are
written out in :mod:`medpeft.methods._lora_function` (why, with the profile: there); the
formula they compute is :meth:`QVLoRALinear.reference_forward`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.backbones import family_of
from ._base import MethodConfig, WrapperMethod, register_method
from ._lora_function import qv_lora

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # diffusers' attention projections


@dataclass
class LoRAConfig(MethodConfig):
    rank: int = 8  # r: rank of each update (MED-PEFT ablates 4-64; 8 by default; UNet: 4)
    alpha: float | None = 32.0  # scaling numerator: updates are scaled by alpha / rank; None: alpha = rank (UNet default)
    dropout: float = 0.1  # dropout on the LoRA branch input (UNet: 0)
    targets: tuple[str, ...] | None = None  # UNet only: attention projections that get an update (None: to_q, to_k, to_v, to_out.0)

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if self.targets is not None:
            self.targets = tuple(self.targets)
            unknown = set(self.targets) - set(UNET_TARGETS)
            if not self.targets or unknown:
                raise ValueError(f"lora targets must be some of {list(UNET_TARGETS)}, got {list(self.targets)}")

    @property
    def scale_numerator(self) -> float:
        return self.alpha if self.alpha is not None else float(self.rank)


class QVLoRALinear(nn.Linear):
    """A fused qkv ``nn.Linear`` plus low-rank updates of its q and v output slices."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        if base.out_features % 3:
            raise ValueError(f"expected a fused qkv projection (out = 3 x dim), got {base}")
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # shared, keeps their names
        dim = base.out_features // 3
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A_q = nn.Parameter(torch.empty(rank, base.in_features, **factory))  # (r, d_in)
        self.lora_B_q = nn.Parameter(torch.zeros(dim, rank, **factory))  # (d, r)
        self.lora_A_v = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B_v = nn.Parameter(torch.zeros(dim, rank, **factory))
        for a in (self.lora_A_q, self.lora_A_v):  # loralib / peft initialisation
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.rank, self.scaling = rank, alpha / rank
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The (3d, d_in) update that merging adds: [ΔW_q; 0; ΔW_v]."""
        dq = self.lora_B_q @ self.lora_A_q * self.scaling
        dv = self.lora_B_v @ self.lora_A_v * self.scaling
        return torch.cat([dq, torch.zeros_like(dq), dv], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        p = self.lora_dropout.p if self.training and isinstance(self.lora_dropout, nn.Dropout) else 0.0
        return qv_lora(x, self.weight, self.bias, self.lora_A_q, self.lora_B_q, self.lora_A_v, self.lora_B_v,
                       self.scaling, p)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same function in plain autograd ops (what :meth:`forward` computes faster)."""
        out = F.linear(x, self.weight, self.bias)  # (B, N, 3d)
        if self.merged:
            return out
        h = self.lora_dropout(x)
        q, k, v = out.chunk(3, dim=-1)
        q = q + F.linear(F.linear(h, self.lora_A_q), self.lora_B_q) * self.scaling
        v = v + F.linear(F.linear(h, self.lora_A_v), self.lora_B_v) * self.scaling
        return torch.cat([q, k, v], dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora rank={self.rank} on q,v, scaling={self.scaling:g}"


def qkv_projections(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent attention module, attribute) of every fused qkv projection of a timm ViT."""
    found = [(block.attn, "qkv") for block in model.blocks if isinstance(getattr(block.attn, "qkv", None), nn.Linear)]
    if not found:
        raise ValueError("no fused qkv projections found; LoRA on q,v needs a timm ViT")
    return found


@register_method
class LoRA(WrapperMethod):
    name = "lora"
    config_class = LoRAConfig
    families = ("vit", "unet")
    layer_types = (QVLoRALinear,)
    summary = "LoRA on the q and v slices of each block's fused qkv (MED-PEFT)"
    family_summary = {"unet": "LoRA (HF peft) on to_q, to_k, to_v, to_out.0 of every attention"}
    paper = "Hu et al. 2021; MED-PEFT (Lian et al. 2024)"
    family_defaults = {"unet": {"rank": 4, "alpha": None, "dropout": 0.0}}
    diffusion_lr = 1e-3

    def check_family(self, family: str) -> None:
        if family != "unet" and self.config.targets is not None:
            raise ValueError("lora targets choose the UNet's attention projections; on a ViT, lora adapts q and v "
                             "of the fused qkv (for peft's LoRA on chosen modules use lora-qkv)")

    def inject(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        if family_of(model) == "unet":
            from peft import LoraConfig, inject_adapter_in_model

            peft_config = LoraConfig(r=cfg.rank, lora_alpha=cfg.scale_numerator,
                                     target_modules=list(cfg.targets or UNET_TARGETS), lora_dropout=cfg.dropout,
                                     bias="none")
            return inject_adapter_in_model(peft_config, model)
        for parent, attr in qkv_projections(model):
            layer = getattr(parent, attr)
            if isinstance(layer, QVLoRALinear):
                raise ValueError("LoRA is already applied to this model")
            setattr(parent, attr, QVLoRALinear(layer, cfg.rank, cfg.scale_numerator, cfg.dropout))
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        if family_of(model) == "unet":
            return [r"\.lora_[AB]\."]
        return [r"\.lora_[AB]_[qv]$"]

    def unload(self, model: nn.Module) -> nn.Module:
        if family_of(model) == "unet":
            raise NotImplementedError("lora on the UNet is peft's; it is not merged into the base weights")
        self.merge(model)
        for parent, attr in qkv_projections(model):
            layer = getattr(parent, attr)
            if isinstance(layer, QVLoRALinear):
                plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                  device=layer.weight.device, dtype=layer.weight.dtype)
                plain.weight, plain.bias = layer.weight, layer.bias
                setattr(parent, attr, plain)
        return model
