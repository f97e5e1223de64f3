"""Assembling a run from its config: data loaders, and backbone + checkpoint + method."""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data import DataSplits, load_dataset
from ..data.transforms import build_transform
from ..methods import Method, apply_method, create_method
from ..models import LoadReport, create_backbone, load_pretrained
from .config import DataConfig, RunConfig, TrainConfig


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA by default; fp32 on CPU, whose bf16 matmuls are far slower here."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def load_splits(data: DataConfig, img_size: int, mean, std) -> DataSplits:
    splits = load_dataset(data.spec, data_root=data.data_root, fraction=data.fraction,
                          fraction_seed=data.fraction_seed, skip_bad=data.skip_bad)
    return splits.with_transforms(build_transform(img_size, mean, std, data.augment),
                                  build_transform(img_size, mean, std, "none"))


def make_loader(dataset, train: TrainConfig, *, shuffle: bool, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=train.batch_size if shuffle else train.eval_batch_size,
                      shuffle=shuffle, generator=generator, num_workers=train.num_workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False,
                      drop_last=False)


def build_base(config: RunConfig, num_outputs: int) -> tuple[nn.Module, LoadReport | None]:
    """Backbone with a fresh head and pretrained weights if any, seeded by the run's seed.

    Seeding first makes a randomly initialised backbone reproducible, so an adapter trained
    on it can be re-attached later (its base fingerprint is checked when it is loaded).
    """
    seed_everything(config.train.seed)
    model = create_backbone(config.backbone, num_outputs)
    report = load_pretrained(model, config.backbone.checkpoint) if config.backbone.checkpoint else None
    return model, report


def build_model(config: RunConfig, num_outputs: int) -> tuple[nn.Module, Method, LoadReport | None]:
    """:func:`build_base`, then the PEFT method applied."""
    model, report = build_base(config, num_outputs)
    method = create_method(config.method, config.method_options)
    return apply_method(model, method), method, report
