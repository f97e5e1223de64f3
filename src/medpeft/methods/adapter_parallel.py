"""adapter-parallel: He et al. 2022's scaled parallel adapter beside every ViT block's MLP (the
formula, defaults and why: ``_bottleneck.py``; AdaptFormer is the same block with s = 0.1)."""
from __future__ import annotations

import torch.nn as nn

from ._base import Method, register_method
from ._bottleneck import (
    ADAPTER_PATTERN,
    ParallelAdapterBlock,
    ParallelAdapterConfig,
    bottleneck_for,
    convert_blocks,
)


@register_method
class ParallelAdapter(Method):
    name = "adapter-parallel"
    config_class = ParallelAdapterConfig
    families = ("vit",)
    summary = "parallel adapter: a scaled bottleneck beside every block's MLP (s = 4)"
    paper = "He et al. 2022, 'Towards a Unified View of Parameter-Efficient Transfer Learning' (ICLR)"

    def inject(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        for block in convert_blocks(model, ParallelAdapterBlock):
            block.mlp_adapter = bottleneck_for(block, cfg.bottleneck, cfg.activation, cfg.dropout,
                                               scale=cfg.scale, learnable_scale=cfg.learnable_scale)
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [ADAPTER_PATTERN]
