"""Datasets: one front door, :func:`load_dataset`, over every registered source.

    splits = load_dataset("medmnist:pneumoniamnist", data_root="~/.medmnist", fraction=0.1)
    splits.info.task, splits.train, splits.val, splits.test
"""
from __future__ import annotations

import os

import numpy as np

from .base import (SPLITS, BadItems, DataError, DatasetInfo, DataSplits, MedicalDataset,
                   positives_per_label)
from .duplicates import find_duplicates, members_of
from .fractions import check_fraction, fraction_indices
from .sources import SOURCES
from .sources.base import SourceData, SplitData
from .spec import DataSpec, parse_spec, resolve_data_root
from .verify import Verify, effective_level, verify_split

__all__ = ["load_dataset", "DataError", "DatasetInfo", "DataSplits", "MedicalDataset",
           "parse_spec", "positives_per_label", "SOURCES"]


def load_dataset(spec: str | DataSpec, *, data_root: str | os.PathLike | None = None,
                 fraction: float = 1.0, fraction_seed: int = 0, skip_bad: bool = False,
                 verify: Verify = "exists", allow_overlap: bool = False) -> DataSplits:
    """Read a dataset spec into train/val/test splits with ``fraction`` of the training labels.

    When the source ships a fixed subset for the fraction (MED-PEFT's ``train_1.txt``,
    ``train_10.txt``) that subset is used; otherwise a nested, stratified, seeded subset is
    drawn (:mod:`medpeft.data.fractions`). Validation and test are never subsampled.
    ``verify`` checks image files up front: ``exists`` (default), ``decode`` (reads every
    image) or ``none``. ``skip_bad`` leaves out bad list lines and bad images with one
    warning, and turns ``exists`` into ``decode``: a corrupt image is only found by decoding
    it, and must be left out before training starts (``none`` still checks no files).
    The same image in two splits (by path or content) is an error unless ``allow_overlap``,
    one path with two labels always is (:mod:`medpeft.data.duplicates`).
    """
    fraction = check_fraction(fraction)
    verify = effective_level(verify, skip_bad)
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    source_class = SOURCES.get(spec.scheme)
    root = resolve_data_root(data_root, source_class.default_root)
    data = source_class(spec, root, skip_bad=skip_bad).read()

    fixed = _fixed_subset(data.fixed_subsets, fraction) if fraction < 1.0 else None
    needed = {"val", "test"} | ({"train"} if fixed is None else set())
    for name in sorted(needed):
        if name not in data.splits:
            where = f" ({data.expected_files[name]} not found)" if name in data.expected_files else ""
            raise DataError(f"{spec.text}: the dataset has no {name!r} split{where}"
                            + _available_fractions(data))
    bad = BadItems(skip_bad)
    splits = {name: verify_split(split, verify, bad) for name, split in data.splits.items()}
    if fixed is not None:
        fixed = verify_split(fixed, verify, bad)
    bad.warn(spec.text)
    for name, split in [*splits.items(), *([("train", fixed)] if fixed is not None else [])]:
        if len(split.labels) == 0:
            raise DataError(f"{spec.text}: the {name} split ({split.origin}) is empty")
    members = members_of(splits, {} if fixed is None else {os.path.basename(fixed.origin): fixed})
    duplicates = find_duplicates(members, allow_overlap=allow_overlap, expected=data.expected_duplicates,
                                 context=spec.text)

    info = DatasetInfo(name=data.name, task=data.task, label_names=tuple(data.label_names),
                       split_sizes={s: len(splits[s].labels) for s in SPLITS if s in splits},
                       channels=data.channels, image_size=data.image_size, subgroup=data.subgroup,
                       modality=data.modality)
    for split in [*splits.values(), *([fixed] if fixed is not None else [])]:
        _check_labels(info, split)

    if fixed is not None:
        train = _dataset(fixed, info, "train")
        note = f"fixed subset {fixed.origin}"
    else:
        train = _dataset(splits["train"], info, "train")
        note = "all training labels"
        if fraction < 1.0:
            train = train.subset(fraction_indices(train.labels, info.task, fraction, fraction_seed))
            note = f"nested stratified subset, fraction seed {fraction_seed}"
    val, test = (_dataset(splits[s], info, s) for s in ("val", "test"))
    return DataSplits(info, train, val, test, fraction, note,
                      full_train_size=info.split_sizes.get("train", 0),
                      skipped=list(data.skipped) + bad.items, notes=list(data.notes),
                      duplicates=duplicates)


def _dataset(split: SplitData, info: DatasetInfo, name: str) -> MedicalDataset:
    assert (split.subgroups is None) == (info.subgroup is None), f"{split.origin}: subgroups"
    return MedicalDataset(split.images, split.labels, info, name, subgroups=split.subgroups)


def _fixed_subset(subsets: dict[float, SplitData], fraction: float) -> SplitData | None:
    for key, subset in subsets.items():
        if np.isclose(key, fraction):
            return subset
    return None


def _available_fractions(data: SourceData) -> str:
    if not data.fixed_subsets:
        return ""
    listed = ", ".join(f"{key:g} ({s.origin})" for key, s in sorted(data.fixed_subsets.items()))
    return f"; only these fixed training fractions are available: {listed}"


def _check_labels(info: DatasetInfo, split: SplitData) -> None:
    labels = np.asarray(split.labels)
    width = 1 if info.task in ("binary", "multiclass") else len(info.label_names)
    if labels.ndim != 2 or labels.shape[1] != width:
        raise DataError(f"{split.origin}: expected {width} label column(s) for a {info.task} task "
                        f"with labels {list(info.label_names)}, got shape {labels.shape}")
    high = len(info.label_names) - 1 if info.task == "multiclass" else 1
    if labels.size and (labels.min() < 0 or labels.max() > high):
        raise DataError(f"{split.origin}: label values must lie in [0, {high}] for a {info.task} "
                        f"task, found [{labels.min()}, {labels.max()}]")
