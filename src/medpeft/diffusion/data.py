"""Captioned images for diffusion training: the training splits of one or more dataset specs,
each image with the caption of its labels (:mod:`.captions`), scaled to [-1, 1].

Only training images train (at ``fraction`` of each spec's training split, nested and seeded as
for the classifiers); validation images give the held-out denoising loss; test images are only
ever read by the scores (:mod:`.scores`), never by training.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..data import load_dataset
from ..data.base import DataSplits
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
class CaptionedData:
    train: Dataset
    val: Dataset
    captions: list[str]  # caption id -> text
    counts: Counter  # training images per caption
    sources: list[tuple[str, int]]  # (dataset name, training images)
    splits: list[DataSplits]  # per spec (the scores read the last one's test split)
    channels: int

    def describe(self) -> str:
        parts = ", ".join(f"{name}: {n}" for name, n in self.sources)
        top = "; ".join(f"{n} x {text!r}" for text, n in self.counts.most_common(4))
        return (f"{len(self.train)} training images ({parts}), {len(self.captions)} distinct captions "
                f"({top}{'; ...' if len(self.counts) > 4 else ''}); {len(self.val)} validation images")


def load_captioned(data: DiffusionDataConfig, captions: CaptionConfig, val_images: int) -> CaptionedData:
    vocabulary: dict[str, int] = {}
    trains, vals, sources, loaded, counts = [], [], [], [], Counter()
    for spec in data.specs:
        splits = load_dataset(spec, data_root=data.data_root, fraction=data.fraction,
                              fraction_seed=data.fraction_seed, skip_bad=data.skip_bad)
        loaded.append(splits)
        for split, out in ((splits.train, trains), (splits.val, vals)):
            texts = captions_of(split.labels, splits.info, captions)
            ids = np.array([vocabulary.setdefault(t, len(vocabulary)) for t in texts], dtype=np.int64)
            out.append(CaptionedImages(split, ids, data.img_size))
            if split is splits.train:
                counts.update(texts)
        sources.append((splits.info.name, len(splits.train)))
    channels = {s.info.channels for s in loaded}
    if len(channels) != 1:
        raise ValueError(f"the pooled datasets differ in channels ({sorted(channels)}); pool grayscale or "
                         "colour datasets only")
    val = ConcatDataset(vals)
    keep = min(val_images, len(val))
    picked = np.linspace(0, len(val) - 1, keep).round().astype(int).tolist() if keep else []
    return CaptionedData(ConcatDataset(trains), Subset(val, picked), list(vocabulary), counts, sources, loaded,
                         channels.pop())
