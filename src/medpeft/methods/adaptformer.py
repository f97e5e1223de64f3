"""AdaptFormer: a parallel bottleneck beside every ViT block's MLP, scaled by 0.1.

Chen et al. 2022, "AdaptFormer: Adapting Vision Transformers for Scalable Visual Recognition"
(NeurIPS). Its AdaptMLP is ``x + MLP(LN(x)) + s · up(ReLU(down(x)))`` with s = 0.1, m = 64,
dropout 0.1 on the bottleneck, no adapter LayerNorm and a zero-initialised up-projection, as in
the official image code (ShoufaChen/AdaptFormer, ``models/custom_modules.py`` with
``ffn_option="parallel"``, ``ffn_adapter_scalar="0.1"``, ``ffn_adapter_init_option="lora"``,
``ffn_adapter_layernorm_option="none"``). ``learnable_scale`` is its "learnable_scalar" option
(here starting at ``scale`` rather than 1). L(2dm + m + d) weights: 1,189,632 in ViT-B/16.

The block is He et al.'s parallel adapter with a smaller scale, so the machinery is shared with
``adapter-parallel`` (adapters.py); only the defaults differ. Not mergeable (non-linear).

Written here because HF peft has no bottleneck adapters for vision models.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._base import register_method
from ._bottleneck import ParallelAdapterConfig
from .adapter_parallel import ParallelAdapter


@dataclass
class AdaptFormerConfig(ParallelAdapterConfig):
    bottleneck: int = 64  # m: width of the down-projection (AdaptFormer-64)
    scale: float = 0.1  # s: fixed multiplier of the adapter output (AdaptFormer's ffn_adapter_scalar)


@register_method
class AdaptFormer(ParallelAdapter):
    name = "adaptformer"
    config_class = AdaptFormerConfig
    summary = "AdaptFormer: a bottleneck beside every block's MLP, scaled by 0.1"
    paper = "Chen et al. 2022, 'AdaptFormer' (NeurIPS)"
