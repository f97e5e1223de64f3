"""Assembling a classifier run from its config: resolved settings, data splits (with the
validation subset of ``val_fraction``), loaders, and backbone + checkpoint + method. Shared by
training, evaluation and serving."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from ..data import SOURCES, DataSplits, load_dataset, parse_spec
from ..data.fractions import validation_indices
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


VALIDATION_NOTE = "validation: "  # how the note on a validation subset starts (DataSplits.notes)


def load_splits(data: DataConfig, backbone: BackboneConfig) -> DataSplits:
    """The dataset at the backbone's size and normalisation (training augmentation from ``data``),
    its validation split cut to ``data.val_fraction`` when that is set (:func:`validation_subset`)."""
    splits = load_dataset(data.spec, data_root=data.data_root, fraction=data.fraction,
                          fraction_seed=data.fraction_seed, skip_bad=data.skip_bad,
                          allow_overlap=data.allow_overlap)
    splits = validation_subset(splits, data)
    size, mean, std = backbone.img_size, backbone.mean, backbone.std
    return splits.with_transforms(build_transform(size, mean, std, data.augment),
                                  build_transform(size, mean, std, "none"))


def validation_subset(splits: DataSplits, data: DataConfig) -> DataSplits:
    """``splits`` with a validation split sized to the label budget: the nested subset of
    :func:`medpeft.data.fractions.validation_indices` at ``data.validation_fraction`` (seeded by
    ``fraction_seed``, with ``val_min_per_class`` per class), and a note saying how many images it
    keeps. Without ``val_fraction`` the splits are returned as they are; test is never cut."""
    fraction = data.validation_fraction
    if fraction is None:
        return splits
    total = len(splits.val)
    indices = validation_indices(splits.val.labels, splits.info.task, fraction, data.fraction_seed,
                                 data.val_min_per_class)
    val = splits.val if len(indices) == total else splits.val.subset(indices)
    asked = f"match = {fraction:g}" if data.val_fraction == "match" else f"{fraction:g}"
    floor = "positives per finding" if splits.info.task == "multilabel" else "per class"
    note = (f"{VALIDATION_NOTE}{len(indices)} of {total} images (val_fraction {asked}, "
            f">= {data.val_min_per_class} {floor})")
    return dataclasses.replace(splits, val=val, notes=[*splits.notes, note])


def validation_note(splits: DataSplits) -> str | None:
    """The note :func:`validation_subset` left on ``splits`` (None: validation is whole)."""
    return next((note for note in splits.notes if note.startswith(VALIDATION_NOTE)), None)


def make_loader(dataset, train: TrainConfig, *, shuffle: bool, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=train.batch_size if shuffle else train.eval_batch_size,
                      shuffle=shuffle, generator=generator, num_workers=train.num_workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=False,
                      drop_last=False)


EVAL_BATCHES_BYTES = 256 * 2**20  # an evaluation split up to this size is transformed once per run


class PreparedBatches:
    """An evaluation split's batches, decoded and transformed once and replayed at every
    validation: the same tensors, in the same order, as a fresh unshuffled ``DataLoader`` over
    the split would give (its transform is deterministic), without redoing the per-image work
    each time (at 1% labels a run validates ~40 times on a split ten times its training set)."""

    def __init__(self, loader: DataLoader):
        self.dataset = loader.dataset
        self.batches = list(loader)

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def eval_loader(dataset, train: TrainConfig, *, budget: int = EVAL_BATCHES_BYTES) -> DataLoader | PreparedBatches:
    """The unshuffled batches of an evaluation split scored more than once (validation): kept in
    memory when its images take at most ``budget`` bytes, else an ordinary loader."""
    loader = make_loader(dataset, train, shuffle=False)
    if len(dataset) == 0:
        return loader
    image = dataset[0][0]
    if not isinstance(image, torch.Tensor) or image.element_size() * image.nelement() * len(dataset) > budget:
        return loader
    return PreparedBatches(loader)


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
