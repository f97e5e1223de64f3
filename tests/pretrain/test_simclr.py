"""SimCLR pretraining (a CNN foundation model for the ResNet methods): view pairs, the loss falls,
the held-out loss is reproducible, and the checkpoint loads into a fine-tuning ResNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medpeft.cli import main
from medpeft.models import BackboneConfig, create_backbone, load_pretrained
from medpeft.pretrain import PretrainConfig, PretrainDataConfig, PretrainTrainConfig, pretrain
from medpeft.pretrain.config import SimCLRConfig
from medpeft.pretrain.simclr import build_simclr, two_views

TINY_DATA = "synthetic-cxr?n=96&n_val=16&n_test=8&size=16"
RESNET = dict(name="resnet18", img_size=16, small_stem=True, drop_path=0.0)


def simclr_config(epochs=3, **train) -> PretrainConfig:
    return PretrainConfig(data=PretrainDataConfig(specs=(TINY_DATA,)), backbone=BackboneConfig(**RESNET),
                          objective="simclr", simclr=SimCLRConfig(hidden_dim=64, projection_dim=32),
                          train=PretrainTrainConfig(**{"epochs": epochs, "batch_size": 32, "val_images": 16,
                                                       "device": "cpu", "blr": 3e-3, **train}))


def test_two_views_differ_and_keep_the_shape():
    views = two_views(16, (0.5,), (0.25,))
    torch.manual_seed(0)
    pair = views(np.random.default_rng(0).random((16, 16)).astype(np.float32))
    assert pair.shape == (2, 3, 16, 16) and not torch.equal(pair[0], pair[1])


def test_the_loss_needs_view_pairs():
    model = build_simclr(BackboneConfig(**RESNET), 16, 32, 0.1)
    with pytest.raises(ValueError, match=r"\(B, 2, C, H, W\)"):
        model(torch.randn(4, 3, 16, 16))
    loss = model(torch.randn(4, 2, 3, 16, 16)).loss
    assert loss.ndim == 0 and loss.item() > 0


def test_simclr_pretrains_a_resnet_whose_encoder_loads_for_fine_tuning(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    summary = pretrain(simclr_config(), tmp_path / "run", name="tiny-simclr", progress=False)
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert summary["figure"] is None  # the reconstruction figure is MAE's
    backbone = create_backbone(BackboneConfig(**RESNET), num_classes=2)
    report = load_pretrained(backbone, "tiny-simclr")
    assert report.missing == ["fc.weight", "fc.bias"]  # every encoder tensor came from the checkpoint
    assert all(k.startswith("projection_head.") for k in report.unused)
    state = torch.load(summary["checkpoint"], weights_only=True)["model"]
    assert torch.equal(backbone.state_dict()["conv1.weight"], state["encoder.conv1.weight"])
    # the card rebuilds the same backbone: size, stem and statistics come from it
    assert main(["finetune", "--data", TINY_DATA, "--checkpoint", "tiny-simclr", "--method", "bitfit",
                 "--epochs", "1", "--n-bootstrap", "0", "--no-progress", "--out", str(tmp_path / "ft")]) == 0
    assert "small_stem: true" in (tmp_path / "ft" / "config.yaml").read_text()


def test_the_held_out_loss_is_the_same_for_the_same_weights(tmp_path):
    from medpeft.pretrain.data import load_unlabeled
    from medpeft.pretrain.pretraining import VAL_MASK_SEED, objective_loss
    from medpeft.runtime import heldout_loss
    config = simclr_config().resolved()
    data = load_unlabeled(config.data, config.backbone, 16, "simclr")
    torch.manual_seed(0)
    model = build_simclr(config.backbone, 32, 64, 0.1)
    loss = objective_loss(model, torch.device("cpu"))
    first = heldout_loss(model, loss, data.val, 8, VAL_MASK_SEED)
    state = torch.random.get_rng_state()
    assert heldout_loss(model, loss, data.val, 8, VAL_MASK_SEED) == first
    assert torch.equal(torch.random.get_rng_state(), state)  # training's random stream is untouched


def test_mae_needs_a_vit():
    with pytest.raises(ValueError, match="MAE pretraining needs a ViT, not resnet18; use --objective simclr"):
        PretrainConfig(backbone=BackboneConfig(**RESNET))


def test_naming_another_architecture_drops_the_default_vit_sizes():
    """``--backbone resnet50 --img-size 28`` must not inherit the default ViT's patch 8 (28 % 8)."""
    config = PretrainConfig.from_dict({"backbone": {"name": "resnet50", "img_size": 28}, "objective": "simclr"})
    assert (config.backbone.name, config.backbone.img_size, config.backbone.patch_size) == ("resnet50", 28, None)
    assert config.backbone.drop_path == 0.0
    vit = PretrainConfig.from_dict({"backbone": {"img_size": 32}})  # same architecture: the recipe's patch stays
    assert (vit.backbone.name, vit.backbone.patch_size) == ("vit_tiny", 8)
