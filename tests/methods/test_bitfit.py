"""BitFit: biases of a ViT, BatchNorm affines of a ResNet, nothing else (besides the head)."""
from __future__ import annotations

import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.models import BackboneConfig, create_backbone

from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


def test_vit_base_count_is_every_bias():
    """ViT-B/16: patch bias 768 + 12 x (norm1, qkv 2304, proj, norm2, fc1 3072, fc2) = 102,144 (~0.10M)."""
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        head, expected = dims(model)["head"], FORMULAS["bitfit"](model, None)
        trainable, _ = count_parameters(apply_method(model, create_method("bitfit")))
    assert trainable == expected
    assert trainable - head == 102_144


def test_vit_trains_exactly_the_bias_terms():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4,
                                                            timm_kwargs={"depth": 2}), NUM_OUTPUTS),
                             create_method("bitfit"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.endswith(".bias")} | {
        "head.weight", "fc_norm.weight"}


def test_resnet_trains_exactly_batchnorm_affines_and_the_classifier():
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("resnet50", img_size=32), NUM_OUTPUTS),
                             create_method("bitfit"))
    batchnorms = [name for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = {f"{bn}.{p}" for bn in batchnorms for p in ("weight", "bias")} | {"fc.weight", "fc.bias"}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert len(batchnorms) == 53  # stem + 3 per bottleneck x 16 + 4 downsamples
    assert count_parameters(model)[0] == 2 * 26_560 + 2048 * NUM_OUTPUTS + NUM_OUTPUTS


def test_merge_and_unload_leave_the_model_untouched():
    method = create_method("bitfit")
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4,
                                                            timm_kwargs={"depth": 1}), NUM_OUTPUTS), method)
    modules = list(model.modules())
    method.merge(model)
    method.unmerge(model)
    assert method.unload(model) is model and list(model.modules()) == modules
