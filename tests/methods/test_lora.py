"""LoRA on q,v of the fused qkv: MED-PEFT's semantics, checked number by number."""
from __future__ import annotations

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods.lora import QVLoRALinear
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model, perturb


def test_vit_base_count_matches_med_peft():
    """ViT-B/16, r=8 on q and v of 12 blocks: 12 * 2 * (8*768 + 768*8) = 294,912 LoRA weights."""
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_base", img_size=224), 14),
                             create_method("lora", {"rank": 8}))
    trainable, total = count_parameters(model)
    assert trainable == 294_912 + (768 * 14 + 14) + 2 * 768
    assert 0.003 < trainable / total < 0.015  # "LoRA trains ~0.3-1.5% of the weights"


def test_b_starts_at_zero_and_key_slice_is_never_adapted():
    model = apply_method(make_model("vit"), create_method("lora", {"rank": 4, "alpha": 8}))
    layer = model.blocks[0].attn.qkv
    assert isinstance(layer, QVLoRALinear)
    assert torch.count_nonzero(layer.lora_B_q) == 0 and torch.count_nonzero(layer.lora_B_v) == 0
    assert layer.scaling == 2.0
    perturb(model)
    delta = layer.delta_weight()
    d = layer.in_features
    assert torch.count_nonzero(delta[d:2 * d]) == 0  # key rows
    assert torch.count_nonzero(delta[:d]) > 0 and torch.count_nonzero(delta[2 * d:]) > 0
    expected_q = layer.lora_B_q @ layer.lora_A_q * layer.scaling
    torch.testing.assert_close(delta[:d], expected_q)


def test_merge_adds_exactly_the_delta_once():
    model = apply_method(make_model("vit"), create_method("lora"))
    perturb(model)
    layer = model.blocks[1].attn.qkv
    before = layer.weight.detach().clone()
    delta = layer.delta_weight().detach()
    method = create_method("lora")
    method.merge(model)
    method.merge(model)
    torch.testing.assert_close(layer.weight, before + delta)
    method.unmerge(model)
    torch.testing.assert_close(layer.weight, before, rtol=0, atol=1e-6)


def test_base_weight_names_are_unchanged_by_injection():
    base = make_model("vit")
    names = set(base.state_dict())
    model = apply_method(base, create_method("lora"))
    assert names <= set(model.state_dict())


def test_dropout_only_in_training_mode():
    model = apply_method(make_model("vit"), create_method("lora", {"dropout": 0.5}))
    perturb(model)
    x = make_inputs("vit")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("options,match", [({"rank": 0}, "rank"), ({"dropout": 1.0}, "dropout"),
                                            ({"bottleneck": 8}, "unknown option")])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        create_method("lora", options)


def test_lora_on_resnet_is_refused_with_the_families_it_fits():
    with pytest.raises(ValueError, match="fits vit backbones, not resnet"):
        apply_method(make_model("resnet"), create_method("lora"))
