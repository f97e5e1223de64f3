"""LayerNorm tuning: the weight and bias of every LayerNorm, nothing else (besides the head)."""
from __future__ import annotations

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_model
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


def test_vit_base_count():
    """ViT-B/16: 12 blocks x 2 LayerNorms x (768 + 768) = 36,864; fc_norm is counted with the head."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        head, expected = dims(model)["head"], FORMULAS["ln"](model, None)
        trainable, _ = count_parameters(apply_method(model, create_method("ln")))
    assert trainable == expected
    assert trainable - head == 36_864


def test_trains_exactly_every_layernorm_affine():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4,
                                                            timm_kwargs={"depth": 2}), NUM_OUTPUTS),
                             create_method("ln"))
    norms = {f"blocks.{i}.{norm}.{p}" for i in range(2) for norm in ("norm1", "norm2") for p in ("weight", "bias")}
    head = {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == norms | head


def test_a_final_norm_trains_when_the_model_has_one():
    """With a class-token ViT (global_pool="token") timm keeps ``norm`` and has no fc_norm."""
    import timm

    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=4, depth=1,
                                  num_classes=NUM_OUTPUTS, global_pool="token")
        model = apply_method(model, create_method("ln"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"norm.weight", "norm.bias"} <= trainable


def test_refused_on_a_resnet_with_the_families_it_fits():
    with pytest.raises(ValueError, match="fits vit backbones, not resnet.*Methods for resnet: .*bitfit"):
        apply_method(make_model("resnet"), create_method("ln"))
