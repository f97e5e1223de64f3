"""Unlabeled images for pretraining: the training splits of one or more dataset specs, pooled.

Only training images are used, so a model pretrained here never saw the validation or test
images it is later scored on; labels are dropped. Validation images (the splits' own, never
test) give a held-out reconstruction loss and the reconstruction figure. Augmentation is
MAE's: a random resized crop (area 0.2-1 by default, bicubic) and optional flips. The pooling
itself is :mod:`medpeft.data.pooled`'s; here is what pretraining makes of each image.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, v2

from ..data.pooled import PooledImages, load_pooled
from ..data.transforms import build_transform, per_channel, to_chw
from ..models.backbones import BackboneConfig
from .config import PretrainDataConfig


class ImagesOnly(Dataset):
    """A dataset's images without labels (sources differ in label shape, MAE needs none)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


class UnlabeledData(PooledImages):
    """The pooled training images (augmented) and validation images (for the held-out loss)."""

    def describe(self) -> str:
        parts = ", ".join(f"{name}: {n}" for name, n in self.sources)
        return (f"pretraining on {len(self.train)} unlabeled training images ({parts}); "
                f"{len(self.val)} validation images for the held-out loss and figure")


def pretraining_transform(img_size: int, mean, std, crop_scale=(0.2, 1.0), hflip: bool = False):
    steps = [v2.RandomResizedCrop(img_size, scale=tuple(crop_scale),
                                  interpolation=InterpolationMode.BICUBIC, antialias=True)]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    pipeline = v2.Compose([*steps, v2.Normalize(per_channel(mean, "mean"), per_channel(std, "std"))])
    return lambda image: pipeline(to_chw(image))


def load_unlabeled(data: PretrainDataConfig, backbone: BackboneConfig, val_images: int,
                   objective: str = "mae") -> UnlabeledData:
    """The pooled training images (augmented for ``objective``) and a fixed set of validation
    images: for MAE at the model's size; for SimCLR as view pairs (the held-out loss seeds them)."""
    if objective == "simclr":
        from .simclr import two_views
        train_tf = eval_tf = two_views(backbone.img_size, backbone.mean, backbone.std, data.crop_scale, data.hflip)
    else:
        train_tf = pretraining_transform(backbone.img_size, backbone.mean, backbone.std, data.crop_scale, data.hflip)
        eval_tf = build_transform(backbone.img_size, backbone.mean, backbone.std, "none")
    wrap = lambda splits: (ImagesOnly(splits.train.with_transform(train_tf)),
                           ImagesOnly(splits.val.with_transform(eval_tf)))
    pooled = load_pooled(data.specs, wrap, val_images, data_root=data.data_root, skip_bad=data.skip_bad,
                         allow_overlap=data.allow_overlap)
    return UnlabeledData(pooled.train, pooled.val, pooled.splits)
