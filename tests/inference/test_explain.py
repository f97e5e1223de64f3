"""Heatmaps: one explainer per backbone family (attention rollout for ViTs, captum's Grad-CAM for
ResNets), maps in [0, 1] at the input size, models left as they were found."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Attention

from medpeft.inference.explain import EXPLAINERS, attention_rollout, display_image, explain, overlay
from medpeft.methods import apply_method, create_method
from medpeft.models import BackboneConfig, create_backbone

VIT = BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 2})
RESNET = BackboneConfig("resnet50", img_size=32, drop_path=0.0, timm_kwargs={"layers": [1, 1, 1, 1],
                                                                              "zero_init_last": False})


@pytest.mark.parametrize("backbone, method, name", [(VIT, "lora", "attention rollout"),
                                                    (VIT, "vpt-deep", "attention rollout"),
                                                    (RESNET, "bitfit", "Grad-CAM")])
def test_each_family_gets_its_explainer_with_maps_in_unit_range(backbone, method, name):
    torch.manual_seed(0)
    model = apply_method(create_backbone(backbone, 3), create_method(method)).eval()
    images = torch.randn(2, 3, backbone.img_size, backbone.img_size)
    heat, explainer = explain(model, images, [0, 2])
    assert explainer == name and heat.shape == (2, backbone.img_size, backbone.img_size)
    assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0) and np.isfinite(heat).all()
    assert images.grad is None


def test_rollout_leaves_the_model_as_it_was():
    model = create_backbone(VIT, 1).eval()
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    fused = [layer.fused_attn for layer in layers]
    images = torch.randn(1, 3, 16, 16)
    before = model(images)
    attention_rollout(model, images, torch.tensor([0]))
    assert [layer.fused_attn for layer in layers] == fused
    assert all(not layer.attn_drop._forward_hooks for layer in layers)
    torch.testing.assert_close(model(images), before)


def test_uniform_attention_rolls_out_to_a_uniform_map():
    """With q = k = 0 every token attends to all alike, so no patch is more relevant than another."""
    model = create_backbone(VIT, 1).eval()
    with torch.no_grad():
        for block in model.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[: 2 * dim] = 0
            block.attn.qkv.bias[: 2 * dim] = 0
    raw = attention_rollout(model, torch.randn(2, 3, 16, 16), torch.tensor([0, 0]))
    torch.testing.assert_close(raw, torch.full_like(raw, raw.mean().item()))


def test_the_overlay_is_the_image_where_the_map_is_cold():
    image = np.random.default_rng(0).random((20, 30)).astype(np.float32)  # not square: centre-cropped
    view = display_image(image, img_size=16)
    assert view.shape == (256, 256, 3)
    heat = np.zeros((16, 16), dtype=np.float32)
    heat[:8] = 1.0  # the top half is hot
    picture = np.asarray(overlay(view, heat)).astype(float) / 255
    bottom = slice(160, 256)
    np.testing.assert_allclose(picture[bottom], view[bottom], atol=1 / 255)
    assert np.abs(picture[:96] - view[:96]).mean() > 0.1


def test_the_registry_names_every_family():
    assert sorted(EXPLAINERS.names()) == ["resnet", "vit"]
