"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"): a self-supervised objective that fits any backbone, so medpeft can make a
CNN foundation model for Dutt et al.'s ResNet methods (SSF, BitFit, TSA, FiLM, LoRA-conv) when no
pretrained ResNet can be downloaded.

Two random views of each unlabeled image go through the encoder (the very timm model fine-tuning
builds, pooled features) and a projection MLP; the NT-Xent loss pulls the two views of an image
together and pushes the other images of the batch away. The loss and the projection head are
lightly's (``lightly.loss.NTXentLoss``, ``lightly.models.modules.SimCLRProjectionHead``); the
views are torchvision transforms chosen for grayscale medical images: a random resized crop, a
small rotation, brightness/contrast jitter and blur, no hue or colour (there is none). The
checkpoint holds ``encoder.*`` (timm keys under the prefix, which the fine-tuning loader strips)
beside ``projection_head.*`` (unused by fine-tuning, reported as such).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torchvision.transforms import InterpolationMode, v2

from ..data.transforms import per_channel, to_chw
from ..models.backbones import BackboneConfig, create_backbone


@dataclass
class SimCLROutput:
    loss: torch.Tensor  # scalar NT-Xent loss over the batch's 2B views


class SimCLR(nn.Module):
    """An encoder (timm backbone without head) + SimCLR's projection head + NT-Xent loss."""

    def __init__(self, encoder: nn.Module, projection_dim: int, hidden_dim: int, temperature: float):
        super().__init__()
        self.encoder = encoder
        features = encoder.num_features
        self.projection_head = SimCLRProjectionHead(features, hidden_dim, projection_dim)
        self.criterion = NTXentLoss(temperature=temperature)

    def forward(self, views: torch.Tensor) -> SimCLROutput:
        """views: (B, 2, C, H, W), two views per image."""
        if views.ndim != 5 or views.shape[1] != 2:
            raise ValueError(f"SimCLR needs (B, 2, C, H, W) view pairs, got {tuple(views.shape)}")
        batch = views.shape[0]
        z = self.projection_head(self.encoder(views.flatten(0, 1)))  # (2B, projection_dim)
        z = z.view(batch, 2, -1)
        return SimCLROutput(self.criterion(z[:, 0], z[:, 1]))

    def encoder_keys(self) -> list[str]:
        return [k for k in self.state_dict() if k.startswith("encoder.")]

    def no_weight_decay(self) -> set[str]:
        return set()


def build_simclr(backbone: BackboneConfig, projection_dim: int, hidden_dim: int, temperature: float) -> SimCLR:
    return SimCLR(create_backbone(backbone, num_classes=0), projection_dim, hidden_dim, temperature)


def two_views(img_size: int, mean, std, crop_scale=(0.2, 1.0), hflip: bool = False):
    """The pair of random views SimCLR contrasts, as one (2, C, H, W) tensor per image."""
    steps = [v2.RandomResizedCrop(img_size, scale=tuple(crop_scale), interpolation=InterpolationMode.BICUBIC,
                                  antialias=True),
             v2.RandomApply([v2.RandomRotation(10)], p=0.5),
             v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8),
             v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 1.0))], p=0.5)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    pipeline = v2.Compose([*steps, v2.Normalize(per_channel(mean, "mean"), per_channel(std, "std"))])

    def transform(image) -> torch.Tensor:
        tensor = to_chw(image)
        return torch.stack([pipeline(tensor), pipeline(tensor)])  # (2, C, H, W)

    return transform
