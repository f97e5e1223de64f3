"""Captioned images for diffusion training: the training splits of one or more dataset specs,
each image with the caption of its labels (:mod:`.captions`), scaled to [-1, 1].

Only training images train (at ``fraction`` of each spec's training split, nested and seeded as
for the classifiers); validation images give the held-out denoising loss; test images are only
ever read by the scores (:mod:`.scores`), never by training. The pooling itself is
:mod:`medpeft.data.pooled`'s; here are the captions and the [-1, 1] scaling.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data.base import DataSplits
from ..data.pooled import PooledImages, load_pooled
from .captions import captions_of
from .config import CaptionConfig, DiffusionDataConfig


def to_model_range(image, img_size: int) -> torch.Tensor:
    """A [0, 1] image (H, W) or (H, W, C) -> (C, img_size, img_size) in [-1, 1]."""
    tensor = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32))
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if tensor.shape[-2:] != (img_size, img_size):
        tensor = F.interpolate(tensor[None], size=(img_size, img_size), mode="bilinear", antialias=True,
                               align_corners=False)[0]
    return tensor.clamp(0, 1) * 2 - 1


class CaptionedImages(Dataset):
    """(image in [-1, 1], caption id) pairs of one split."""

    def __init__(self, split, caption_ids: np.ndarray, img_size: int):
        self.split, self.caption_ids, self.img_size = split, caption_ids, img_size

    def __len__(self) -> int:
        return len(self.caption_ids)

    def __getitem__(self, index: int):
        return to_model_range(self.split.images.load(index), self.img_size), int(self.caption_ids[index])


@dataclass
class CaptionedData(PooledImages):
    captions: list[str] = field(default_factory=list)  # caption id -> text
    counts: Counter = field(default_factory=Counter)  # training images per caption

    def describe(self) -> str:
        parts = ", ".join(f"{name}: {n}" for name, n in self.sources)
        top = "; ".join(f"{n} x {text!r}" for text, n in self.counts.most_common(4))
        return (f"{len(self.train)} training images ({parts}), {len(self.captions)} distinct captions "
                f"({top}{'; ...' if len(self.counts) > 4 else ''}); {len(self.val)} validation images")


def load_captioned(data: DiffusionDataConfig, captions: CaptionConfig, val_images: int) -> CaptionedData:
    """The specs' training images (at ``data.fraction``) with caption ids, and a fixed set of
    validation images; the specs must agree in channels (the UNet has one input width)."""
    vocabulary: dict[str, int] = {}
    counts = Counter()
    ids = lambda texts: np.array([vocabulary.setdefault(t, len(vocabulary)) for t in texts], dtype=np.int64)

    def captioned(splits: DataSplits):
        train, val = (captions_of(split.labels, splits.info, captions) for split in (splits.train, splits.val))
        counts.update(train)
        return (CaptionedImages(splits.train, ids(train), data.img_size),
                CaptionedImages(splits.val, ids(val), data.img_size))

    pooled = load_pooled(data.specs, captioned, val_images, data_root=data.data_root, skip_bad=data.skip_bad,
                         fraction=data.fraction, fraction_seed=data.fraction_seed, same_channels=True,
                         allow_overlap=data.allow_overlap)
    return CaptionedData(pooled.train, pooled.val, pooled.splits, list(vocabulary), counts)
