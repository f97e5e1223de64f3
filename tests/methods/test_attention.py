"""Attention tuning: qkv and attention projection of every block, nothing else (besides the head)."""
from __future__ import annotations

import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


def test_vit_base_count():
    """ViT-B/16: 12 x (4 x 768^2 + 4 x 768) = 28,348,416 attention weights."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        head, expected = dims(model)["head"], FORMULAS["attn"](model, None)
        trainable, total = count_parameters(apply_method(model, create_method("attn")))
    assert trainable == expected
    assert trainable - head == 28_348_416
    assert 0.3 < trainable / total < 0.35


def test_trains_exactly_qkv_and_proj():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4,
                                                            timm_kwargs={"depth": 2}), NUM_OUTPUTS),
                             create_method("attn"))
    expected = {f"blocks.{i}.attn.{layer}.{p}" for i in range(2) for layer in ("qkv", "proj")
                for p in ("weight", "bias")}
    head = {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected | head
