"""adapter: Houlsby et al. 2019 bottleneck adapters after the attention and MLP outputs of every ViT
block (the formula, defaults and why: ``_bottleneck.py``)."""
from __future__ import annotations

import torch.nn as nn

from ._base import Method, register_method
from ._bottleneck import (
    ADAPTER_PATTERN,
    AdapterConfig,
    SequentialAdapterBlock,
    bottleneck_for,
    convert_blocks,
)


@register_method
class SequentialAdapter(Method):
    name = "adapter"
    config_class = AdapterConfig
    families = ("vit",)
    summary = "Houlsby adapters: bottlenecks after the attention and MLP outputs of every block"
    paper = "Houlsby et al. 2019, 'Parameter-Efficient Transfer Learning for NLP' (ICML)"

    def inject(self, model: nn.Module) -> nn.Module:
        cfg = self.config
        for block in convert_blocks(model, SequentialAdapterBlock):
            for enabled, attr in ((cfg.after_attn, "attn_adapter"), (cfg.after_mlp, "mlp_adapter")):
                adapter = bottleneck_for(block, cfg.bottleneck, cfg.activation, cfg.dropout) if enabled else None
                setattr(block, attr, adapter)
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [ADAPTER_PATTERN]
