"""Assembling a classifier run from its config: resolved settings, data splits, loaders, and
backbone + checkpoint + method. Shared by training, evaluation and serving."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data import SOURCES, DataSplits, load_dataset, parse_spec
from ..data.transforms import build_transform
from ..methods import Method, apply_method
from ..models import BackboneConfig, LoadReport, check_backbone, create_backbone, load_pretrained, resolve_backbone
from .device import resolve_device
from .runconfig import DataConfig, RunConfig, TrainConfig
from .seeding import seed_everything


def resolve_run_config(config: RunConfig) -> tuple[RunConfig, list[str]]:
    """``config`` ready to run, checked before anything touches disk or data: the backbone's
    unset fields filled from its checkpoint card or spec (plus warnings where the command line
    contradicts the card), the backbone built on the meta device, the device and the data
    spec's source checked."""
    backbone, warnings = resolve_backbone(config.backbone)
    check_backbone(backbone)
    resolve_device(config.train.device)
    SOURCES.get(parse_spec(config.data.spec).scheme)
    return dataclasses.replace(config, backbone=backbone), warnings


def load_splits(data: DataConfig, backbone: BackboneConfig) -> DataSplits:
    """The dataset at the backbone's size and normalisation (training augmentation from ``data``)."""
    splits = load_dataset(data.spec, data_root=data.data_root, fraction=data.fraction,
                          fraction_seed=data.fraction_seed, skip_bad=data.skip_bad)
    size, mean, std = backbone.img_size, backbone.mean, backbone.std
    return splits.with_transforms(build_transform(size, mean, std, data.augment),
                                  build_transform(size, mean, std, "none"))


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
    method = config.create_method()
    return apply_method(model, method), method, report
