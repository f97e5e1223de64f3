"""Image transforms: decoded [0, 1] arrays -> normalised 3-channel tensors at the model's size.

Normalisation statistics belong to the backbone (its pretraining data; see
:mod:`medpeft.models.backbones`), never to the dataset's file names, so every transform takes
them as arguments. Augmentation is chosen by name in the training config. Built on
torchvision.transforms.v2.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import v2

AUGMENTATIONS = ("none", "light", "flip", "randaug")


def to_chw(image: np.ndarray) -> torch.Tensor:
    """(H, W) or (H, W, C) float array -> (3, H, W) tensor (grayscale repeated, alpha dropped)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    channels = tensor.shape[0]
    if channels == 1:
        return tensor.expand(3, -1, -1).contiguous()
    if channels in (3, 4):
        return tensor[:3].contiguous()
    raise ValueError(f"images need 1, 3 or 4 channels, got {channels}")


def per_channel(values: Sequence[float], name: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * 3
    if len(values) != 3:
        raise ValueError(f"{name} takes 1 or 3 values, got {values}")
    return values


def build_transform(img_size: int, mean: Sequence[float], std: Sequence[float],
                    augment: str = "none") -> Callable[[np.ndarray], torch.Tensor]:
    """The transform for one split: ``augment="none"`` for evaluation.

    ``light`` is a mild random-resized crop (scale 0.8-1); ``flip`` adds horizontal flips,
    which can be wrong for chest X-rays (the heart is on the left) and is never the default.
    ``randaug`` is MED-PEFT's / MAE's fine-tuning recipe (``main_finetune.py``: timm's
    ``rand-m9-mstd0.5-inc1`` and random erasing 0.25), built from torchvision's RandAugment
    (2 operations, magnitude 9) after the light crop, and RandomErasing (p 0.25) on the
    normalised image; mixup and cutmix are batch-level and live in the training config.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    normalize = v2.Normalize(per_channel(mean, "mean"), per_channel(std, "std"))
    if augment == "none":
        steps = [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size), normalize]
    else:
        steps = [v2.RandomResizedCrop(img_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True)]
        if augment == "flip":
            steps.append(v2.RandomHorizontalFlip())
        if augment == "randaug":
            steps.append(v2.RandAugment(num_ops=2, magnitude=9))
        steps.append(normalize)
        if augment == "randaug":
            steps.append(v2.RandomErasing(p=0.25, value=0))
    pipeline = v2.Compose(steps)

    def transform(image: np.ndarray) -> torch.Tensor:
        return pipeline(to_chw(image))

    return transform
