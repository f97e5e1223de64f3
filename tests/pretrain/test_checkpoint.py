"""Checkpoints: MAE layout, bit-exact round trip, loading into a fine-tuning backbone, the cache."""
from __future__ import annotations

import json

import torch

from medpeft.models import create_backbone, load_pretrained, read_state_dict
from medpeft.models.cache import read_card, resolve_checkpoint
from medpeft.pretrain import build_mae
from medpeft.pretrain.checkpoint import make_card, publish, save_checkpoint

from .conftest import tiny_backbone, tiny_config


def trained_mae(config):
    torch.manual_seed(0)
    model = build_mae(config.backbone, config.mae)
    with torch.no_grad():  # weights unlike any fresh initialisation
        for param in model.parameters():
            param.add_(torch.randn_like(param))
    return model


def save(tmp_path, config, model):
    card = make_card(config, epoch=2, sources=[("synthetic", 48)], history=[
        {"loss": 1.0, "val_loss": 0.9}, {"loss": 0.8, "val_loss": None}], img_per_s=100.0,
        wall_time_s=3.0, params={"encoder": 1, "decoder": 1})
    return save_checkpoint(tmp_path / "checkpoint-2.pth", model, config, 2, card)


def test_round_trip_is_bit_exact_in_mae_layout(tmp_path):
    config = tiny_config()
    model = trained_mae(config)
    path = save(tmp_path, config, model)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"model", "epoch", "config"} and raw["epoch"] == 2
    assert {"mask_token", "decoder_embed.weight", "decoder_pred.bias", "decoder_pos_embed",
            "cls_token", "pos_embed", "patch_embed.proj.weight", "norm.weight"} <= set(raw["model"])
    again = build_mae(config.backbone, config.mae)
    again.load_state_dict(read_state_dict(path))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_loads_into_a_fine_tuning_backbone_with_no_missing_encoder_keys(tmp_path):
    config = tiny_config()
    model = trained_mae(config)
    path = save(tmp_path, config, model)
    backbone = create_backbone(tiny_backbone(drop_path=0.1), num_classes=3)
    report = load_pretrained(backbone, path)
    assert report.missing_encoder == []
    assert set(report.missing) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert set(report.unused) == {"norm.weight", "norm.bias"}  # MAE global-pool fine-tuning
    assert "mask_token" in report.dropped and "decoder_pred.weight" in report.dropped
    own = backbone.state_dict()
    for key in model.encoder_keys():
        if key in own:
            assert torch.equal(own[key], model.state_dict()[key]), key


def test_card_beside_the_checkpoint_and_the_named_cache(tmp_path, private_cache):
    config = tiny_config()
    path = save(tmp_path, config, trained_mae(config))
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["data"] == [config.data.specs[0]] and card["epochs"] == 2
    assert (card["img_size"], card["patch_size"], card["mask_ratio"]) == (16, 4, 0.75)
    assert card["loss_curve"] == [1.0, 0.8] and card["config"] == config.resolved().to_dict()
    cached = publish(path, "tiny-mae")
    assert cached == private_cache / "checkpoints" / "tiny-mae" / "checkpoint.pth"
    assert resolve_checkpoint("tiny-mae") == cached
    assert read_card(cached) == card
    assert load_pretrained(create_backbone(tiny_backbone(), 2), "tiny-mae").missing_encoder == []
