"""Tiny MAE configs: a 2-block ViT-Tiny on 16-px synthetic chest X-rays (16 patches of 4 px)."""
from __future__ import annotations

import pytest

from medpeft.models import BackboneConfig
from medpeft.pretrain import MAEConfig, PretrainConfig, PretrainDataConfig, PretrainTrainConfig

TINY_DATA = "synthetic-cxr?n=48&n_val=8&n_test=8&size=16"
TINY_BACKBONE = dict(name="vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 2})


def tiny_backbone(**overrides) -> BackboneConfig:
    return BackboneConfig(**{**TINY_BACKBONE, **overrides})


def tiny_config(epochs: int = 2, **train) -> PretrainConfig:
    return PretrainConfig(
        data=PretrainDataConfig(specs=(TINY_DATA,)),
        backbone=tiny_backbone(),
        mae=MAEConfig(decoder_dim=32, decoder_depth=1, decoder_heads=2),
        train=PretrainTrainConfig(**{"epochs": epochs, "batch_size": 16, "val_images": 8,
                                     "figure_images": 2, "device": "cpu", **train}))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own named cache (and synthetic-data cache)."""
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
