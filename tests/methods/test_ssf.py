"""SSF: where the scales and shifts sit, and that merging folds them in exactly."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods.ssf import SSFBatchNorm2d, SSFConv2d, SSFLayerNorm, SSFLinear, ScaleShift, add_scale_shift
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model, perturb
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


def test_vit_base_count():
    """ViT-B/16: 2 x (768 patch + 12 x (7 x 768 + 3072)) = 204,288 (SSF reports ~0.2M plus the head)."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        head, expected = dims(model)["head"], FORMULAS["ssf"](model, create_method("ssf").config)
        trainable, _ = count_parameters(apply_method(model, create_method("ssf")))
    assert trainable == expected
    assert trainable - head == 204_288


def test_vit_placement_follows_the_official_code():
    model = apply_method(make_model("vit"), create_method("ssf"))
    adapted = {name for name, m in model.named_modules() if isinstance(m, ScaleShift)}
    per_block = {"norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"}
    assert adapted == {"patch_embed.proj"} | {f"blocks.{i}.{op}" for i in range(2) for op in per_block}
    assert type(model.blocks[0].attn.qkv) is SSFLinear and model.blocks[0].attn.qkv.ssf_scale.shape == (3 * 192,)
    assert type(model.patch_embed.proj) is SSFConv2d and type(model.blocks[0].norm1) is SSFLayerNorm
    assert type(model.fc_norm) is not SSFLayerNorm  # the head trains in full


def test_resnet_gets_ssf_after_every_batchnorm_and_no_conv():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("resnet50", img_size=32), NUM_OUTPUTS),
                             create_method("ssf"))
    adapted = [m for m in model.modules() if isinstance(m, ScaleShift)]
    assert len(adapted) == 53 and all(type(m) is SSFBatchNorm2d for m in adapted)
    assert not any(isinstance(m, ScaleShift) for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("layer,x", [
    (nn.Linear(5, 4), torch.randn(2, 3, 5)),
    (nn.Linear(5, 4, bias=False), torch.randn(2, 3, 5)),
    (nn.Conv2d(3, 4, 2, stride=2), torch.randn(2, 3, 4, 4)),
    (nn.LayerNorm(4), torch.randn(2, 3, 4)),
    (nn.BatchNorm2d(4).eval(), torch.randn(2, 4, 3, 3)),
])
def test_merge_gives_gamma_w_and_gamma_b_plus_beta(layer, x):
    torch.manual_seed(0)
    add_scale_shift(layer)
    with torch.no_grad():
        layer.ssf_scale.uniform_(0.5, 1.5)
        layer.ssf_shift.normal_()
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.normal_(), layer.running_var.uniform_(0.5, 2.0)
    weight = layer.weight.detach().clone()
    bias = layer.bias.detach().clone() if layer.bias is not None else torch.zeros(4)
    gamma, beta = layer.ssf_scale.detach().clone(), layer.ssf_shift.detach().clone()
    with torch.no_grad():
        adapted = layer(x)
        layer.merge()
        layer.merge()
    torch.testing.assert_close(layer.weight, gamma.view(-1, *[1] * (weight.dim() - 1)) * weight)
    torch.testing.assert_close(layer.bias, gamma * bias + beta)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), adapted)
        layer.unmerge()
    torch.testing.assert_close(layer.weight, weight)
    torch.testing.assert_close(layer.bias, bias)


def test_unload_restores_plain_timm_classes_and_keys():
    base = make_model("vit")
    keys, classes = set(base.state_dict()), {n: type(m) for n, m in base.named_modules()}
    method = create_method("ssf")
    model = apply_method(base, method)
    assert set(model.state_dict()) - keys == {f"{n}.ssf_{p}" for n, m in model.named_modules()
                                              if isinstance(m, ScaleShift) for p in ("scale", "shift")}
    perturb(model)
    plain = method.unload(model)
    assert set(plain.state_dict()) == keys
    assert {n: type(m) for n, m in plain.named_modules()} == classes


def test_official_random_init_is_close_to_identity_but_not_equal():
    base = make_model("vit")
    x = make_inputs("vit")
    with torch.no_grad():
        expected = base(x)
        model = apply_method(base, create_method("ssf", {"init_std": 0.02}))
        assert not torch.equal(model(x), expected)
    assert abs(model.blocks[0].attn.qkv.ssf_scale.mean().item() - 1.0) < 0.01


def test_bad_options_and_double_application():
    with pytest.raises(ValueError, match="init_std"):
        create_method("ssf", {"init_std": -0.1})
    model = apply_method(make_model("vit"), create_method("ssf"))
    with pytest.raises(ValueError, match="already applied"):
        apply_method(model, create_method("ssf"))


def test_unmerge_refuses_a_zero_scale():
    layer = nn.Linear(3, 2)
    add_scale_shift(layer)
    with torch.no_grad():
        layer.ssf_scale[0] = 0.0
    layer.merge()
    with pytest.raises(ValueError, match="scale is exactly zero"):
        layer.unmerge()
