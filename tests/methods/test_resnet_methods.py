"""ResNet methods (FiLM, TSA, conv LoRA): placement, ResNet-50 counts, exact folding when merged."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn as nn

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods.film import FiLMBatchNorm2d
from medpeft.methods.tsa import EYE_SCALE, TSAConv2d
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model, perturb
from .shapes import NUM_OUTPUTS

R50_HEAD = 2048 * 14 + 14
R50_WIDTHS = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3  # bottleneck widths of the 16 blocks


@pytest.fixture(scope="module")
def resnet():
    return make_model("resnet")


def resnet50_on_meta(name: str, options: dict | None = None, img_size: int = 224):
    with torch.device("meta"):
        return apply_method(create_backbone(BackboneConfig("resnet50", img_size=img_size), 14),
                            create_method(name, options))


def test_film_count_on_resnet50():
    """2 x the 26,560 BatchNorm channels: stem 64, 6w per bottleneck, 4w per stage's downsample."""
    channels = 64 + sum(6 * w for w in R50_WIDTHS) + sum(4 * w for w in (64, 128, 256, 512))
    trainable, _ = count_parameters(resnet50_on_meta("film"))
    assert trainable == 2 * channels + R50_HEAD == 53_120 + R50_HEAD


def test_film_merge_folds_exactly_into_batchnorm(resnet):
    method = create_method("film")
    model = apply_method(copy.deepcopy(resnet), method).eval()
    perturb(model)
    layers = [m for m in model.modules() if isinstance(m, FiLMBatchNorm2d)]
    assert len(layers) == 53
    originals = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in layers]
    x = make_inputs("resnet")
    with torch.no_grad():
        adapted = model(x)
        method.merge(model)
    for layer, (gamma_bn, beta_bn) in zip(layers, originals):
        assert torch.equal(layer.weight, gamma_bn * layer.film_scale)
        assert torch.equal(layer.bias, beta_bn * layer.film_scale + layer.film_shift)
    with torch.no_grad():
        plain = method.unload(model)
        torch.testing.assert_close(plain(x), adapted, rtol=1e-5, atol=1e-5)
    assert all(type(m) is nn.BatchNorm2d for m in plain.modules() if isinstance(m, nn.BatchNorm2d))
    assert set(plain.state_dict()) == set(resnet.state_dict())


def test_tsa_puts_one_adapter_on_each_bottleneck_3x3_conv(resnet):
    model = apply_method(copy.deepcopy(resnet), create_method("tsa"))
    adapted = {name: m for name, m in model.named_modules() if isinstance(m, TSAConv2d)}
    assert len(adapted) == 16
    assert all(name.endswith(".conv2") and m.kernel_size == (3, 3) for name, m in adapted.items())
    assert [m.tsa_alpha.shape for m in adapted.values()] == [(w, w, 1, 1) for w in R50_WIDTHS]
    assert all(torch.count_nonzero(m.tsa_alpha) == 0 for m in adapted.values())


@pytest.mark.parametrize("img_size", [64, 224, 512])
@pytest.mark.parametrize("pre_classifier", [False, True])
def test_tsa_count_on_resnet50(img_size, pre_classifier):
    """sum of width^2 over the 16 bottlenecks (+ 2048^2 for the pre-classifier alignment)."""
    model = resnet50_on_meta("tsa", {"pre_classifier": pre_classifier}, img_size=img_size)
    trainable, _ = count_parameters(model)
    adapters = sum(w * w for w in R50_WIDTHS)
    assert adapters == 1_257_472
    assert trainable == adapters + (2048 ** 2 if pre_classifier else 0) + R50_HEAD


@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2)])
def test_tsa_adapter_folds_into_the_centre_tap(stride, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
    layer = TSAConv2d(conv)
    with torch.no_grad():
        layer.tsa_alpha.normal_()
        x = torch.randn(2, 8, 9, 9)
        adapted = layer(x)
        before = layer.weight.clone()
        layer.merge()
        layer.merge()
        torch.testing.assert_close(layer(x), adapted, rtol=1e-5, atol=1e-5)
        changed = (layer.weight != before).any(dim=(0, 1))
        assert changed.tolist() == [[False, False, False], [False, True, False], [False, False, False]]
        layer.unmerge()
    torch.testing.assert_close(layer.weight, before, rtol=0, atol=1e-6)


def test_tsa_with_pre_classifier_merges_into_the_head_and_unloads(resnet):
    method = create_method("tsa", {"pre_classifier": True})
    model = apply_method(copy.deepcopy(resnet), method).eval()
    assert torch.equal(model.fc.tsa_beta, torch.eye(2048))
    perturb(model)
    head_weight = model.fc.weight.detach().clone()
    x = make_inputs("resnet")
    with torch.no_grad():
        adapted = model(x)
        method.merge(model)
        method.merge(model)
        torch.testing.assert_close(model(x), adapted, rtol=1e-4, atol=1e-4)
        method.unmerge(model)
        assert torch.equal(model.fc.weight, head_weight)
        plain = method.unload(model)
        torch.testing.assert_close(plain(x), adapted, rtol=1e-4, atol=1e-4)
    assert type(plain.fc) is nn.Linear
    assert set(plain.state_dict()) == set(resnet.state_dict())


def test_tsa_eye_init_follows_the_reference_code(resnet):
    model = apply_method(copy.deepcopy(resnet), create_method("tsa", {"init": "eye"}))
    alpha = model.layer1[0].conv2.tsa_alpha
    assert torch.equal(alpha[:, :, 0, 0], EYE_SCALE * torch.eye(64))


def test_lora_conv_count_on_resnet50():
    """r=8 per bottleneck conv2 (w -> w, 3x3): A = conv(w -> 8, 3x3), B = conv(8 -> w, 1x1)."""
    model = resnet50_on_meta("lora-conv", {"rank": 8})
    trainable, _ = count_parameters(model)
    assert trainable == sum(8 * (9 * w + w) for w in R50_WIDTHS) + R50_HEAD == 302_080 + R50_HEAD
    assert model.layer1[0].conv2.lora_A["default"].weight.shape == (8, 64, 3, 3)


@pytest.mark.parametrize("name", ["film", "tsa", "lora-conv"])
def test_a_resnet_method_on_a_vit_is_refused_with_the_families_it_fits(name):
    with pytest.raises(ValueError, match="fits resnet backbones, not vit"):
        apply_method(make_model("vit"), create_method(name))


def test_bad_tsa_init():
    with pytest.raises(ValueError, match="init must be one of zero, eye"):
        create_method("tsa", {"init": "identity"})


@pytest.mark.parametrize("name", ["lora-conv", "tsa"])
def test_conv2_methods_merge_exactly_when_the_residual_branches_are_live(resnet, name):
    """timm zero-initialises each bottleneck's bn3, which hides conv2 changes in the matrix's tiny model."""
    live = copy.deepcopy(resnet)
    for stage in (live.layer1, live.layer2, live.layer3, live.layer4):
        for block in stage:
            nn.init.constant_(block.bn3.weight, 0.2)
    x = make_inputs("resnet")
    with torch.no_grad():
        base = live(x)
    method = create_method(name)
    model = apply_method(live, method).eval()
    perturb(model)
    with torch.no_grad():
        adapted = model(x)
        assert not torch.allclose(adapted, base, rtol=1e-3, atol=1e-3)  # the adapters do act
        method.merge(model)
        torch.testing.assert_close(model(x), adapted, rtol=1e-4, atol=1e-5)
        plain = method.unload(model)
        torch.testing.assert_close(plain(x), adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tsa", "lora-conv", "film", "ssf", "linear"])
def test_closed_residual_branches_that_stay_closed_are_warned_about(name):
    """timm's zero_init_last (random init) zeroes bn3: conv2 adapters would never get a gradient."""
    closed = create_backbone(BackboneConfig("resnet50", img_size=32, drop_path=0.0), NUM_OUTPUTS)
    with pytest.warns(UserWarning, match=r"16 residual branches .* closed.*zero_init_last: false"):
        apply_method(closed, create_method(name))


@pytest.mark.parametrize("name", ["bitfit", "fft"])
def test_no_warning_when_the_method_trains_the_closing_weight(name):
    closed = create_backbone(BackboneConfig("resnet50", img_size=32, drop_path=0.0), NUM_OUTPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_method(closed, create_method(name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_method(make_model("resnet"), create_method("tsa"))  # the matrix's model has live branches
