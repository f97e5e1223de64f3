"""AdaptFormer: He et al.'s parallel adapter with AdaptFormer's defaults (s = 0.1, m = 64)."""
from __future__ import annotations

import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods._bottleneck import ParallelAdapterBlock
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_model
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


def test_vit_base_count():
    """AdaptFormer-64 on ViT-B/16: 12 x (768*64 + 64 + 64*768 + 768) = 1,189,632 (paper: 1.26M with its head)."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        method = create_method("adaptformer")
        head, expected = dims(model)["head"], FORMULAS["adaptformer"](model, method.config)
        trainable, _ = count_parameters(apply_method(model, method))
    assert trainable == expected
    assert trainable - head == 1_189_632


def test_defaults_match_the_official_image_config():
    cfg = create_method("adaptformer").config
    assert (cfg.bottleneck, cfg.scale, cfg.activation, cfg.dropout) == (64, 0.1, "relu", 0.1)
    assert not cfg.learnable_scale
    model = apply_method(make_model("vit"), create_method("adaptformer"))
    assert all(type(b) is ParallelAdapterBlock and b.mlp_adapter.scale == 0.1 for b in model.blocks)
