"""Backbone identity as data: each registered backbone's family, sizes, statistics and head;
checkpoint cards drive the defaults; bad timm arguments are clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from medpeft.models import (BACKBONES, CXR_MEAN, CXR_STD, IMAGENET_MEAN, IMAGENET_STD, BackboneConfig,
                            check_backbone, create_backbone, family_of, head_names, resolve_backbone,
                            spec_for)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_spec_matches_the_model_it_builds(name):
    spec = spec_for(name)
    with torch.device("meta"):
        model = create_backbone(BackboneConfig(name), num_classes=3)
    assert family_of(model) == spec.family
    assert head_names(model) == spec.head
    if spec.family == "vit":
        assert model.patch_embed.patch_size[0] == spec.patch_size
        assert model.patch_embed.img_size[0] == spec.img_size
    assert len(spec.mean) in (1, 3) and len(spec.std) == len(spec.mean)


def test_dinov2_and_resnet50_use_imagenet_statistics_and_vits_chest_xray():
    for name in ("vit_base_dinov2", "vit_large_dinov2", "resnet50"):
        resolved, _ = BackboneConfig(name).with_defaults()
        assert (resolved.mean, resolved.std) == (IMAGENET_MEAN, IMAGENET_STD), name
    resolved, _ = BackboneConfig("vit_base").with_defaults()
    assert (resolved.mean, resolved.std) == (CXR_MEAN, CXR_STD)
    assert (resolved.img_size, resolved.patch_size) == (224, 16)


def test_an_unregistered_timm_name_takes_timms_config():
    spec = spec_for("resnet18")
    assert (spec.family, spec.mean, spec.head, spec.patch_size) == ("resnet", IMAGENET_MEAN, ("fc",), None)
    assert spec_for("vit_small_patch8_224").patch_size == 8


def write_card(tmp_path, **card):
    checkpoint = tmp_path / "mae.pth"
    torch.save({"model": {}}, checkpoint)
    checkpoint.with_suffix(".json").write_text(json.dumps(card))
    return str(checkpoint)


def test_a_checkpoint_card_sets_the_defaults(tmp_path):
    path = write_card(tmp_path, backbone="vit_tiny", img_size=28, patch_size=4, mean=[0.3], std=[0.2],
                      config={"backbone": {"timm_kwargs": {"depth": 6}}})
    resolved, warnings = resolve_backbone(BackboneConfig(checkpoint=path))
    assert (resolved.name, resolved.img_size, resolved.patch_size) == ("vit_tiny", 28, 4)
    assert (resolved.mean, resolved.std, resolved.timm_kwargs) == ((0.3,), (0.2,), {"depth": 6})
    assert warnings == []


def test_the_command_line_wins_over_the_card_with_a_warning(tmp_path):
    path = write_card(tmp_path, backbone="vit_tiny", img_size=28, patch_size=4, mean=[0.3], std=[0.2])
    resolved, warnings = resolve_backbone(BackboneConfig(checkpoint=path, img_size=56, mean=(0.5,)))
    assert (resolved.img_size, resolved.mean, resolved.std) == (56, (0.5,), (0.2,))
    assert len(warnings) == 2
    assert "img_size 56 differs from the checkpoint card's 28" in warnings[0]
    assert "mean [0.5] differs from the checkpoint card's [0.3]" in warnings[1]


def test_without_a_card_the_spec_decides(tmp_path):
    checkpoint = tmp_path / "plain.pth"
    torch.save({"model": {}}, checkpoint)
    resolved, warnings = resolve_backbone(BackboneConfig("vit_base_dinov2", checkpoint=str(checkpoint)))
    assert (resolved.mean, resolved.img_size, resolved.patch_size, warnings) == (IMAGENET_MEAN, 224, 14, [])


def test_a_misspelt_timm_argument_names_the_close_match():
    with pytest.raises(ValueError, match=r"do not fit vit_tiny_patch16_224.*did you mean 'depth'\?"):
        check_backbone(BackboneConfig("vit_tiny", timm_kwargs={"dpeth": 2}))


def test_yaml_without_a_space_after_the_colon_is_explained():
    with pytest.raises(ValueError, match=r"'depth:2' is not an argument name; write '\{depth: 2\}'"):
        BackboneConfig("vit_tiny", timm_kwargs={"depth:2": None})


@pytest.mark.parametrize("kwargs,match", [
    ({"img_size": 4}, "at least 8"), ({"img_size": 30, "patch_size": 4}, "must divide"),
    ({"mean": (0.1, 0.2)}, "1 or 3 values"), ({"std": (0.0,)}, "positive"),
])
def test_bad_sizes_and_statistics(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackboneConfig("vit_tiny", **kwargs)
