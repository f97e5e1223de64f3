"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) for every task medpeft trains.

MED-PEFT fine-tunes with MAE's ``main_finetune.py`` recipe, which mixes batches (mixup 0.8,
cutmix 1.0, one of the two per batch). Written here because torchvision's ``v2.MixUp`` /
``v2.CutMix`` and timm's ``Mixup`` mix class-index targets only; binary and multilabel targets
are float vectors here, mixed with the same weight as the images (multiclass ones become one-hot
first). The draws come from torch's global generator, which the epoch loop reseeds every epoch,
so a resumed run mixes exactly as an uninterrupted one.
"""
from __future__ import annotations

import math

import torch


def mix_batch(images: torch.Tensor, targets: torch.Tensor, *, task: str, num_outputs: int,
              mixup: float, cutmix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` (B, C, H, W) and ``targets`` mixed with a shuffled copy of the batch; the
    returned targets are float (B, num_outputs) probabilities for every task."""
    if task == "multiclass":
        targets = torch.nn.functional.one_hot(targets.long(), num_outputs).float()
    targets = targets.float()
    use_cutmix = cutmix > 0 and (mixup <= 0 or bool(torch.rand(()) < 0.5))
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    order = torch.randperm(len(images), device=images.device)
    if use_cutmix:
        images, lam = _paste_box(images, order, lam)
    else:
        images = lam * images + (1.0 - lam) * images[order]
    return images, lam * targets + (1.0 - lam) * targets[order]


def _paste_box(images: torch.Tensor, order: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """CutMix: a box of area about (1 - lam) from the shuffled batch; lam corrected to the
    box actually pasted (it is clipped at the borders)."""
    height, width = images.shape[-2:]
    ratio = math.sqrt(1.0 - lam)
    box_h, box_w = int(height * ratio), int(width * ratio)
    cy, cx = int(torch.randint(height, ())), int(torch.randint(width, ()))
    y0, y1 = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    x0, x1 = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    images = images.clone()
    images[..., y0:y1, x0:x1] = images[order][..., y0:y1, x0:x1]
    return images, 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
