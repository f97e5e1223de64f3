"""The autoencoder itself: masking, the loss, the target, shapes, positions, key layout."""
from __future__ import annotations

import math

import pytest
import torch

from medpeft.models import create_backbone
from medpeft.pretrain import MAEConfig, build_mae, random_masking
from medpeft.pretrain.mae import kept_count
from medpeft.pretrain.pos_embed import sincos_2d

from .conftest import tiny_backbone


def tiny_mae(**mae) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mae(tiny_backbone(), MAEConfig(**{"decoder_dim": 32, "decoder_depth": 1,
                                                   "decoder_heads": 2, **mae})).eval()


@pytest.mark.parametrize("length,ratio", [(16, 0.75), (49, 0.75), (64, 0.9), (10, 0.5), (196, 0.6)])
def test_masking_keeps_exactly_int_of_the_visible_share(length, ratio):
    x = torch.randn(5, length, 8)
    kept, mask, ids_restore = random_masking(x, ratio, torch.Generator().manual_seed(0))
    keep = int(length * (1 - ratio))
    assert kept.shape == (5, keep, 8)
    assert mask.shape == (5, length)
    assert torch.equal(mask.sum(dim=1), torch.full((5,), float(length - keep)))
    for b in range(5):  # the kept tokens are exactly the unmasked positions
        visible = x[b, mask[b] == 0]
        assert torch.equal(kept[b].sort(dim=0).values, visible.sort(dim=0).values)
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(length).expand(5, -1))


def test_masks_differ_between_samples_and_repeat_with_the_seed():
    x = torch.randn(8, 64, 4)
    _, first, _ = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    _, again, _ = random_masking(x, 0.75, torch.Generator().manual_seed(3))
    _, other, _ = random_masking(x, 0.75, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert len({tuple(row.tolist()) for row in first}) == 8  # each sample its own mask
    torch.manual_seed(5)  # without a generator: the global RNG, so seed_everything governs it
    _, global_a, _ = random_masking(x, 0.75)
    torch.manual_seed(5)
    _, global_b, _ = random_masking(x, 0.75)
    assert torch.equal(global_a, global_b)


def test_encoder_sees_only_visible_patches_and_decoder_predicts_all():
    model = tiny_mae()
    images = torch.randn(3, 3, 16, 16)
    latent, mask, ids_restore = model.forward_encoder(images, torch.Generator().manual_seed(0))
    assert latent.shape == (3, 1 + kept_count(16, 0.75), 192)  # cls + 4 visible of 16
    pred = model.forward_decoder(latent, ids_restore)
    assert pred.shape == (3, 16, 4 * 4 * 3)  # every patch, p*p*C pixels


def test_loss_covers_only_the_masked_patches():
    model = tiny_mae(norm_pix_loss=False)
    images = torch.randn(2, 3, 16, 16)
    out = model(images, torch.Generator().manual_seed(1))
    hidden = model.unpatchify(out.mask.unsqueeze(-1).expand_as(out.pred)).bool()  # (B, C, H, W)
    changed_visible = torch.where(hidden, images, images + 5.0)
    changed_hidden = torch.where(hidden, images + 5.0, images)
    # the same prediction scored against edited images: visible pixels do not count
    assert torch.equal(model.forward_loss(changed_visible, out.pred, out.mask), out.loss)
    assert model.forward_loss(changed_hidden, out.pred, out.mask) > out.loss + 1.0
    # and by hand: mean over hidden patches of the per-patch mean squared error
    per_patch = ((out.pred - model.patchify(images)) ** 2).mean(-1)
    torch.testing.assert_close(out.loss, per_patch[out.mask.bool()].mean())


def test_norm_pix_target_is_per_patch_standardised():
    model = tiny_mae(norm_pix_loss=True)
    images = torch.rand(2, 3, 16, 16) * 3 + 2
    images[0, :, :4, :4] = 0.7  # one constant patch: no NaN, all zeros
    target = model.target(images)
    raw = model.patchify(images)
    expected = (raw - raw.mean(-1, keepdim=True)) / torch.sqrt(raw.var(-1, keepdim=True, unbiased=True) + 1e-6)
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(target[1].mean(-1), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(target[1].std(-1), torch.ones(16), atol=1e-3, rtol=0)
    torch.testing.assert_close(target[0, 0], torch.zeros(48), atol=1e-3, rtol=0)  # float rounding only
    assert torch.isfinite(model(images).loss)


def test_patchify_round_trip_and_mae_pixel_order():
    model = tiny_mae()
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(model.unpatchify(model.patchify(images)), images)
    patch = model.patchify(images)[0, 5]  # row 1, column 1 of the 4x4 grid
    assert torch.equal(patch.view(4, 4, 3), images[0, :, 4:8, 4:8].permute(1, 2, 0))


def test_sincos_positions_match_the_mae_formula():
    dim, grid = 16, (3, 4)
    embed = sincos_2d(dim, grid)[0]  # (1 + 12, 16)
    assert embed.shape == (13, 16) and torch.equal(embed[0], torch.zeros(16))
    row, col = 2, 3
    omega = [1 / 10000 ** (i / 4) for i in range(4)]
    expected = ([math.sin(col * w) for w in omega] + [math.cos(col * w) for w in omega]
                + [math.sin(row * w) for w in omega] + [math.cos(row * w) for w in omega])
    torch.testing.assert_close(embed[1 + row * 4 + col], torch.tensor(expected))


def test_positions_are_fixed_sincos_and_keys_are_the_fine_tuning_backbone_s():
    model = tiny_mae()
    assert torch.equal(model.pos_embed, sincos_2d(192, (4, 4)))
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    backbone = create_backbone(tiny_backbone(), num_classes=2)
    encoder = set(model.encoder_keys())
    assert encoder - set(backbone.state_dict()) == {"norm.weight", "norm.bias"}  # MAE's final norm
    assert set(backbone.state_dict()) - encoder == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert all(k.startswith("decoder_") or k == "mask_token"
               for k in set(model.state_dict()) - encoder)


def test_mask_ratio_that_hides_everything_is_refused():
    with pytest.raises(ValueError, match="hides all"):
        tiny_mae(mask_ratio=0.99)
    with pytest.raises(ValueError, match="mask_ratio"):
        MAEConfig(mask_ratio=1.0)
