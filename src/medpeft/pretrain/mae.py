"""Masked autoencoder (MAE) over a timm VisionTransformer encoder.

He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners". Each image is cut into
patches; a random ``mask_ratio`` of them is hidden per sample; the encoder sees only the
visible patches (plus the class token); a lightweight decoder receives the encoded tokens
plus a shared learned mask token at every hidden position, and regresses the hidden patches'
pixels (optionally normalised per patch). The loss is the mean squared error over the hidden
patches only.

Borrowed from facebookresearch/mae ``models_mae.py``: masking by argsort of noise, the
decoder, the loss and the initialisation. Unlike MAE, the encoder is not rewritten: it is
the very timm model :func:`medpeft.models.create_backbone` builds for fine-tuning, whose
modules are adopted at the top level of this module. The state dict is therefore MAE's
layout (timm ViT keys + ``decoder_*`` + ``mask_token``), which ``medpeft finetune
--checkpoint`` and MAE-compatible tools load with no missing encoder keys.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block, VisionTransformer

from ..models.backbones import BackboneConfig, create_backbone
from .config import MAEConfig
from .pos_embed import sincos_2d

NO_WEIGHT_DECAY = ("cls_token", "mask_token", "pos_embed", "decoder_pos_embed")


def kept_count(num_patches: int, mask_ratio: float) -> int:
    """How many patches the encoder sees: MAE's ``int(L * (1 - mask_ratio))``."""
    return int(num_patches * (1 - mask_ratio))


def random_masking(x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
    """Keep a random ``kept_count`` of the tokens of each sample, independently per sample.

    x: (B, L, D). Returns the kept tokens (B, K, D) in shuffled order, the mask (B, L) with
    1 = hidden and 0 = kept, and ``ids_restore`` (B, L) that undoes the shuffle.
    """
    batch, length, dim = x.shape
    keep = kept_count(length, mask_ratio)
    device = generator.device if generator is not None else x.device
    noise = torch.rand(batch, length, generator=generator, device=device).to(x.device)  # (B, L)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the smallest noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]  # (B, K)
    kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # (B, K, D)
    mask = torch.ones(batch, length, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to patch order
    return kept, mask, ids_restore


@dataclass
class MAEOutput:
    loss: torch.Tensor  # scalar: mean over hidden patches
    pred: torch.Tensor  # (B, L, p*p*C) predicted patches (normalised if norm_pix_loss)
    mask: torch.Tensor  # (B, L) 1 = hidden


class MaskedAutoencoderViT(nn.Module):
    """MAE whose encoder is ``encoder``'s patch embedding, class token, positions, blocks, norm."""

    def __init__(self, encoder: VisionTransformer, config: MAEConfig):
        super().__init__()
        _check_encoder(encoder)
        self.config = config
        self.mask_ratio = config.mask_ratio
        self.norm_pix_loss = config.norm_pix_loss
        # encoder: the fine-tuning backbone's own modules, so their state-dict keys are timm's
        self.patch_embed, self.cls_token, self.pos_embed = encoder.patch_embed, encoder.cls_token, encoder.pos_embed
        self.norm_pre, self.blocks, self.norm = encoder.norm_pre, encoder.blocks, encoder.norm
        self.grid = tuple(self.patch_embed.grid_size)  # (rows, cols) of patches
        self.num_patches = self.grid[0] * self.grid[1]
        if kept_count(self.num_patches, config.mask_ratio) < 1:
            raise ValueError(f"mask_ratio {config.mask_ratio} hides all {self.num_patches} patches; "
                             "lower it or use smaller patches")
        self.patch_size = self.patch_embed.patch_size[0]
        self.in_chans = self.patch_embed.proj.in_channels
        width, dec = encoder.embed_dim, config.decoder_dim
        # decoder (MAE's names, which checkpoint loaders drop)
        self.decoder_embed = nn.Linear(width, dec)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dec), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.ModuleList(
            Block(dec, config.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
            for _ in range(config.decoder_depth))
        self.decoder_norm = norm(dec)
        self.decoder_pred = nn.Linear(dec, self.patch_size ** 2 * self.in_chans)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """MAE's initialisation: fixed sin-cos positions, xavier linears, N(0, 0.02) tokens."""
        self.pos_embed.data.copy_(sincos_2d(self.pos_embed.shape[-1], self.grid))
        self.pos_embed.requires_grad_(False)  # fixed while pretraining, as in MAE
        self.decoder_pos_embed.data.copy_(sincos_2d(self.decoder_pos_embed.shape[-1], self.grid))
        weight = self.patch_embed.proj.weight.data  # like nn.Linear, not nn.Conv2d
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        return set(NO_WEIGHT_DECAY)

    def encoder_keys(self) -> list[str]:
        """State-dict keys of the encoder (what a fine-tuning backbone receives)."""
        return [k for k in self.state_dict() if not k.startswith("decoder_") and k != "mask_token"]

    # ------------------------------------------------------------------ patches <-> images

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C), row-major patches, pixels (p, q, c) as in MAE."""
        b, c, _, _ = images.shape
        p, (rows, cols) = self.patch_size, self.grid
        x = images.reshape(b, c, rows, p, cols, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(b, rows * cols, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W)."""
        b, c, p, (rows, cols) = patches.shape[0], self.in_chans, self.patch_size, self.grid
        x = patches.reshape(b, rows, cols, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, c, rows * p, cols * p)

    # ------------------------------------------------------------------ forward

    def forward_encoder(self, images: torch.Tensor, generator: torch.Generator | None = None):
        x = self.patch_embed(images)  # (B, L, D)
        x = x + self.pos_embed[:, 1:]  # positions first, so kept tokens keep their own
        x, mask, ids_restore = random_masking(x, self.mask_ratio, generator)  # (B, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)  # (B, 1 + K, D)
        x = self.norm(self.blocks(self.norm_pre(x)))
        return x, mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)  # (B, 1 + K, Dd)
        batch, length, dim = x.shape[0], ids_restore.shape[1], x.shape[2]
        masks = self.mask_token.expand(batch, length + 1 - x.shape[1], -1)  # (B, L - K, Dd)
        tokens = torch.cat([x[:, 1:], masks], dim=1)  # shuffled order, no cls
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # patch order
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed  # (B, 1 + L, Dd)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (B, L, p*p*C), cls dropped

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """What the decoder regresses: pixels per patch, normalised per patch if norm_pix_loss."""
        target = self.patchify(images)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_patch = ((pred.float() - self.target(images.float())) ** 2).mean(dim=-1)  # (B, L)
        return (per_patch * mask).sum() / mask.sum()  # hidden patches only

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> MAEOutput:
        latent, mask, ids_restore = self.forward_encoder(images, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return MAEOutput(self.forward_loss(images, pred, mask), pred, mask)


def _check_encoder(encoder: nn.Module) -> None:
    if not isinstance(encoder, VisionTransformer):
        raise ValueError(f"MAE pretraining needs a ViT backbone, got {type(encoder).__name__}")
    if encoder.num_prefix_tokens != 1 or not encoder.has_class_token or encoder.no_embed_class \
            or encoder.pos_embed is None:
        raise ValueError("MAE pretraining needs a ViT with one class token, no register tokens and "
                         "learned absolute position embeddings (timm's standard ViT)")
    if getattr(encoder, "dynamic_img_size", False):
        raise ValueError("MAE pretraining uses a fixed image size; drop dynamic_img_size")


def encoder_config(backbone: BackboneConfig) -> BackboneConfig:
    """The fine-tuning backbone's config with the final norm before pooling (MAE's ``norm``)."""
    return replace(backbone, timm_kwargs={**backbone.timm_kwargs, "fc_norm": False})


def build_mae(backbone: BackboneConfig, config: MAEConfig) -> MaskedAutoencoderViT:
    """An MAE around the encoder ``create_backbone(backbone)`` builds (no head, no fc_norm)."""
    return MaskedAutoencoderViT(create_backbone(encoder_config(backbone), num_classes=0), config)
