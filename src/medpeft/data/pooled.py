"""Images pooled from the training splits of several dataset specs: what pretraining (MAE,
SimCLR) and diffusion learn from, each wrapping the images its own way.

:func:`load_pooled` reads the specs in order (:func:`medpeft.data.load_dataset`, with
``fraction`` of each spec's training split, nested and seeded as for the classifiers), hands
each spec's splits to the caller's ``wrap`` (labels dropped for pretraining, captions attached
for diffusion) right after reading it, and concatenates what it returns: every spec's training
images, and at most ``val_images`` validation images spread evenly over the specs' validation
splits (a fixed set, for a held-out loss). Test images are never wrapped. No spec at all, a
spec without training images, and (with ``same_channels``, for a model with one input width)
specs that differ in image channels are a ``DataError``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

from . import load_dataset
from .base import DataSplits
from .errors import DataError


@dataclass
class PooledImages:
    train: Dataset  # every spec's training images as wrapped, in spec order
    val: Dataset  # at most val_images validation images as wrapped, spread evenly over the specs
    splits: list[DataSplits]  # per spec, as read

    @property
    def sources(self) -> list[tuple[str, int]]:
        """(dataset name, training images used) per spec."""
        return [(s.info.name, len(s.train)) for s in self.splits]

    @property
    def channels(self) -> int:
        """The specs' one number of image channels; a ``DataError`` when they differ."""
        found = {s.info.channels for s in self.splits}
        if len(found) != 1:
            raise DataError(f"the pooled datasets differ in channels ({sorted(found)}); pool grayscale or "
                            "colour datasets only")
        return found.pop()


def load_pooled(specs: Sequence[str], wrap: Callable[[DataSplits], tuple[Dataset, Dataset]], val_images: int, *,
                data_root: str | os.PathLike | None = None, skip_bad: bool = False, fraction: float = 1.0,
                fraction_seed: int = 0, same_channels: bool = False, allow_overlap: bool = False) -> PooledImages:
    """The specs' training images pooled, and a fixed set of their validation images, through
    ``wrap(splits) -> (training dataset, validation dataset)``; ``allow_overlap`` as for
    :func:`medpeft.data.load_dataset`."""
    if not specs:
        raise DataError("give at least one dataset spec (--data)")
    trains, vals, loaded = [], [], []
    for spec in specs:
        splits = load_dataset(spec, data_root=data_root, fraction=fraction, fraction_seed=fraction_seed,
                              skip_bad=skip_bad, allow_overlap=allow_overlap)
        if len(splits.train) == 0:
            raise DataError(f"{spec}: no training images to pool")
        train, val = wrap(splits)
        trains.append(train)
        vals.append(val)
        loaded.append(splits)
    pooled = PooledImages(ConcatDataset(trains), spread(ConcatDataset(vals), val_images), loaded)
    if same_channels:
        pooled.channels  # noqa: B018 - raises when they differ, before anything trains
    return pooled


def spread(dataset: Dataset, count: int) -> Subset:
    """At most ``count`` items of ``dataset``, evenly spread from its first to its last."""
    keep = min(count, len(dataset))
    picked = np.linspace(0, len(dataset) - 1, keep).round().astype(int).tolist() if keep else []
    return Subset(dataset, picked)
