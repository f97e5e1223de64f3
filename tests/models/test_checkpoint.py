"""Checkpoint loading on files the tests write themselves: MAE/MRM, timm, DINOv2, the cache."""
from __future__ import annotations

import collections

import pytest
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed

from medpeft.models import BackboneConfig, create_backbone, load_pretrained
from medpeft.models.cache import checkpoint_dir

from ..payloads import Exploit

TINY = dict(drop_path=0.0, timm_kwargs={"depth": 2})


def encoder(img_size=32, patch_size=4, seed=0, **kw):
    torch.manual_seed(seed)
    return create_backbone(BackboneConfig("vit_tiny", img_size=img_size, patch_size=patch_size, **TINY, **kw), 5)


def mae_file(path, source):
    """An MAE-layout checkpoint: encoder + decoder + mask token under 'model', norm not fc_norm."""
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(("head.", "fc_norm."))}
    state.update({"norm.weight": torch.randn(192), "norm.bias": torch.randn(192),
                  "mask_token": torch.zeros(1, 1, 128), "decoder_embed.weight": torch.randn(128, 192),
                  "decoder_pred.weight": torch.randn(48, 128), "head.weight": torch.randn(1000, 192)})
    torch.save({"model": state, "epoch": 99, "args": {"mask_ratio": 0.75}}, path)
    return state


def test_mae_checkpoint_same_grid_loads_exactly(tmp_path):
    source = encoder()
    saved = mae_file(tmp_path / "mae.pth", source)
    model = encoder(seed=1)
    report = load_pretrained(model, tmp_path / "mae.pth")
    own = model.state_dict()
    for key in [k for k in saved if k.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed"))]:
        assert torch.equal(own[key], saved[key]), key
    assert report.missing_encoder == []
    assert set(report.missing) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert {"decoder_embed.weight", "decoder_pred.weight", "mask_token", "head.weight"} <= set(report.dropped)
    assert set(report.unused) == {"norm.weight", "norm.bias"}


def test_pos_embed_is_interpolated_to_the_new_grid(tmp_path):
    source = encoder(img_size=32, patch_size=4)  # 8x8 grid
    saved = mae_file(tmp_path / "mae.pth", source)
    model = encoder(img_size=48, patch_size=4, seed=1)  # 12x12 grid
    load_pretrained(model, tmp_path / "mae.pth")
    assert model.pos_embed.shape == (1, 1 + 144, 192)
    expected = resample_abs_pos_embed(saved["pos_embed"], new_size=(12, 12), num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed.detach(), expected)
    torch.testing.assert_close(model.pos_embed[:, 0], saved["pos_embed"][:, 0])  # cls position kept
    assert torch.equal(model.blocks[1].mlp.fc2.weight, saved["blocks.1.mlp.fc2.weight"])


def test_timm_safetensors_and_plain_pth(tmp_path):
    source = encoder()
    state = source.state_dict()
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.save(state, tmp_path / "model.pth")
    for name in ("model.safetensors", "model.pth"):
        model = encoder(seed=2)
        report = load_pretrained(model, tmp_path / name)
        assert report.missing == [] and report.unused == []
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key


def test_original_dinov2_state_dict(tmp_path):
    config = BackboneConfig("vit_base_dinov2", img_size=518, drop_path=0.0, timm_kwargs={"depth": 1})
    torch.manual_seed(0)
    source = create_backbone(config, 0)
    state = collections.OrderedDict((k, v) for k, v in source.state_dict().items()
                                    if not k.startswith(("fc_norm", "head")))
    state["norm.weight"], state["norm.bias"] = torch.ones(768), torch.zeros(768)
    state["mask_token"] = torch.zeros(1, 768)  # the original DINOv2 layout has it
    state["blocks.0.ls1.gamma"] = torch.rand(768)  # not timm's constant init, which a skipped load would match
    torch.save(state, tmp_path / "dinov2_vitb14_pretrain.pth")
    target = create_backbone(BackboneConfig("vit_base_dinov2", img_size=112, drop_path=0.0,
                                            timm_kwargs={"depth": 1}), 2)
    report = load_pretrained(target, tmp_path / "dinov2_vitb14_pretrain.pth")
    assert report.missing_encoder == []
    assert target.pos_embed.shape == (1, 1 + 8 * 8, 768)  # 37x37 grid resampled to 8x8
    assert torch.equal(target.blocks[0].ls1.gamma, state["blocks.0.ls1.gamma"])
    assert torch.equal(target.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


def test_arbitrary_pickles_are_refused_not_run(tmp_path):
    marker = tmp_path / "payload-ran"
    source = encoder()  # a real state dict, so only the payload makes the file unsafe
    torch.save({"model": {**source.state_dict(), "x": Exploit(marker)}}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="never unpickles"):
        load_pretrained(encoder(seed=1), tmp_path / "evil.pth")
    assert not marker.exists()
    # positive control: the payload is live, plain unpickling runs it
    torch.load(tmp_path / "evil.pth", map_location="cpu", weights_only=False)
    assert marker.read_text() == "ran"


def test_other_architecture_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    small = create_backbone(BackboneConfig("vit_small", img_size=32, patch_size=4, **TINY), 5)
    torch.save({"model": small.state_dict()}, tmp_path / "small.pth")
    with pytest.raises(ValueError, match="different architecture"):
        load_pretrained(encoder(), tmp_path / "small.pth")
    torch.save({"model": {"something.else": torch.zeros(3)}}, tmp_path / "unrelated.pth")
    with pytest.raises(ValueError, match="almost no weights"):
        load_pretrained(encoder(), tmp_path / "unrelated.pth")


def test_cached_name_and_missing_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    folder = checkpoint_dir("cxr-tiny")
    folder.mkdir(parents=True)
    mae_file(folder / "checkpoint.pth", encoder())
    report = load_pretrained(encoder(seed=3), "cxr-tiny")
    assert report.path == folder / "checkpoint.pth"
    with pytest.raises(FileNotFoundError, match="cxr-tiny"):
        load_pretrained(encoder(), "no-such-checkpoint")


def test_a_classifier_the_checkpoint_lacks_starts_near_zero_as_in_mae(tmp_path):
    """MAE's main_finetune re-initialises the new head with std 2e-5 (timm's 0.02 would point it somewhere)."""
    mae_file(tmp_path / "mae.pth", encoder())  # its 1000-class head is dropped
    model = encoder(seed=1)
    load_pretrained(model, tmp_path / "mae.pth")
    assert 0 < model.head.weight.abs().max() < 1e-4 and not model.head.bias.any()

    source = encoder(seed=2)  # a checkpoint with a head of the task's shape keeps it
    torch.save(source.state_dict(), tmp_path / "with_head.pth")
    model = encoder(seed=3)
    load_pretrained(model, tmp_path / "with_head.pth")
    assert torch.equal(model.head.weight, source.head.weight)
