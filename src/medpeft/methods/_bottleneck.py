"""Shared code of the bottleneck adapters in ViT blocks: sequential (``adapter``, Houlsby) and parallel
(``adapter-parallel``, He et al.; ``adaptformer``); each method is in its own file.

An adapter is a small bottleneck MLP, ``s · up(dropout(act(down(h))))`` with ``down``: d -> m and
``up``: m -> d. ``up`` starts at zero (``down`` as nn.Linear/LoRA: kaiming-uniform, zero bias),
so every adapter starts as a zero branch and the adapted model as the base model. Why: a frozen
backbone with a capacity knob (m) between a few hundred thousand and millions of weights.

- ``adapter``: Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP" (ICML).
  One adapter after the attention output projection and one after the MLP output projection
  (each after its dropout, before the residual add), each with an identity skip:
  ``h + adapter(h)``. m = 64 and GELU as in Houlsby's code (google-research/adapter-bert,
  ``feedforward_adapter``); 2L(2dm + m + d) weights, 2,379,264 in ViT-B/16. Houlsby et al. also
  train the LayerNorms; here only the adapters (and the head) train.
- ``adapter-parallel``: He et al. 2022, "Towards a Unified View of Parameter-Efficient Transfer
  Learning" (ICLR): a scaled parallel adapter beside each block's MLP, reading the MLP's
  input stream: ``x + MLP(LN(x)) + s · adapter(x)``. s = 4, ReLU, dropout 0.1, zero-initialised
  up-projection, no adapter LayerNorm: their code's ``ffn_adapter_scalar=4``,
  ``ffn_adapter_init_option=lora``, ``ffn_adapter_layernorm_option=none``
  (jxhe/unify-parameter-efficient-tuning). Their MAM setting used m = 512 on BART; medpeft
  defaults to m = 64 to match the other adapters on ViT-B (L(2dm + m + d) = 1,189,632).
  AdaptFormer (adaptformer.py) is the same block with s = 0.1.

How: each timm ``Block`` keeps its identity, modules and state-dict keys; its class is switched
to :class:`SequentialAdapterBlock` or :class:`ParallelAdapterBlock`, whose ``forward`` (written
out below) says where the adapters sit, and the adapters are added as ``attn_adapter`` /
``mlp_adapter`` children. Adapters are non-linear, so they cannot be merged.

Written here because HF peft has no bottleneck adapters for vision models (those live in the
separate ``adapters`` library, for transformers models).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block

from ._base import MethodConfig

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def check_bottleneck(method: str, bottleneck: int, activation: str, dropout: float) -> None:
    if not isinstance(bottleneck, int) or bottleneck < 1:
        raise ValueError(f"{method} bottleneck must be a positive integer, got {bottleneck!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{method} activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{method} dropout must be in [0, 1), got {dropout}")


@dataclass
class AdapterConfig(MethodConfig):
    bottleneck: int = 64  # m: width of the down-projection (Houlsby's default)
    activation: str = "gelu"  # non-linearity between down and up: gelu (Houlsby's code) or relu
    dropout: float = 0.0  # dropout on the bottleneck activations
    after_attn: bool = True  # an adapter after the attention output projection (Houlsby)
    after_mlp: bool = True  # an adapter after the MLP output projection (Houlsby; Pfeiffer et al. keep only this one)

    def __post_init__(self):
        check_bottleneck("adapter", self.bottleneck, self.activation, self.dropout)
        if not (self.after_attn or self.after_mlp):
            raise ValueError("adapter needs after_attn or after_mlp (or both) to be true")


@dataclass
class ParallelAdapterConfig(MethodConfig):
    bottleneck: int = 64  # m: width of the down-projection
    scale: float = 4.0  # s: the adapter output is multiplied by s (He et al.'s scaled parallel adapter)
    learnable_scale: bool = False  # train s too (one scalar per block, starting at `scale`)
    activation: str = "relu"  # non-linearity between down and up: relu (He et al., AdaptFormer) or gelu
    dropout: float = 0.1  # dropout on the bottleneck activations (0.1 in He et al.'s and AdaptFormer's code)

    def __post_init__(self):
        check_bottleneck("parallel adapter", self.bottleneck, self.activation, self.dropout)
        if not math.isfinite(self.scale):
            raise ValueError(f"parallel adapter scale must be a finite number, got {self.scale}")


class Bottleneck(nn.Module):
    """``h -> s · up(dropout(act(down(h))))``, (B, N, d) -> (B, N, d); zero until ``up`` trains."""

    def __init__(self, dim: int, width: int, activation: str, dropout: float, scale: float = 1.0,
                 learnable_scale: bool = False, device=None, dtype=None):
        super().__init__()
        factory = dict(device=device, dtype=dtype)
        self.down = nn.Linear(dim, width, **factory)  # (d -> m)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(width, dim, **factory)  # (m -> d)
        with torch.no_grad():  # the "lora" init of He et al.'s and AdaptFormer's code
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
        self.scale = nn.Parameter(torch.tensor(float(scale), **factory)) if learnable_scale else scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(self.dropout(self.act(self.down(h))))

    def extra_repr(self) -> str:
        return "" if isinstance(self.scale, nn.Parameter) else f"scale={self.scale:g}"


class SequentialAdapterBlock(Block):
    """Houlsby placement: ``h + adapter(h)`` on the attention and MLP branch outputs, before each residual add."""

    attn_adapter: Bottleneck | None
    mlp_adapter: Bottleneck | None

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        h = self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)  # (B, N, d), after proj + dropout
        if self.attn_adapter is not None:
            h = h + self.attn_adapter(h)
        x = x + self.drop_path1(self.ls1(h))
        h = self.mlp(self.norm2(x))  # after fc2 + dropout
        if self.mlp_adapter is not None:
            h = h + self.mlp_adapter(h)
        return x + self.drop_path2(self.ls2(h))


class ParallelAdapterBlock(Block):
    """He et al. / AdaptFormer placement: ``x + MLP(LN(x)) + s · adapter(x)`` beside the MLP."""

    mlp_adapter: Bottleneck

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)))
        # the adapter reads the residual stream (not LN(x)) and skips drop-path, as AdaptFormer's code
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x)))) + self.mlp_adapter(x)


def convert_blocks(model: nn.Module, block_class: type[Block]) -> list[Block]:
    """Switch every timm ``Block`` of ``model`` to ``block_class`` in place; returns the blocks."""
    blocks = list(model.blocks)
    for block in blocks:
        if type(block) is not Block:
            applied = isinstance(block, (SequentialAdapterBlock, ParallelAdapterBlock))
            raise ValueError("adapters are already applied to this model" if applied else
                             f"adapters need timm's standard ViT Block, got {type(block).__name__}")
    for block in blocks:
        block.__class__ = block_class
    return blocks


def bottleneck_for(block: Block, width: int, activation: str, dropout: float, **scale) -> Bottleneck:
    weight = block.norm1.weight
    return Bottleneck(weight.shape[0], width, activation, dropout, device=weight.device, dtype=weight.dtype, **scale)


ADAPTER_PATTERN = r"^blocks\.\d+\.(attn|mlp)_adapter\."
