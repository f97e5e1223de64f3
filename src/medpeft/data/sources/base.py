"""What a data source hands to :func:`medpeft.data.load_dataset`.

A source only reads: it returns images and labels per split (and, when the dataset ships
them, fixed training subsets such as MED-PEFT's ``train_1.txt``). Fractions, transforms and
validation of the result are done once, in ``medpeft.data``, for every source alike.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ...registry import Registry
from ..base import ImageStore, Task
from ..spec import DataSpec


@dataclass
class SplitData:
    images: ImageStore
    labels: np.ndarray  # (N, L) int, see medpeft.data.base
    origin: str  # the file (or generator) it came from, for messages
    subgroups: np.ndarray | None = None  # (N,) str, see medpeft.data.base.MedicalDataset

    def subset(self, indices, images: ImageStore | None = None) -> "SplitData":
        """Items ``indices``, everything kept aligned (``images`` if already subset)."""
        indices = np.asarray(indices, dtype=np.int64)
        images = self.images.subset(indices) if images is None else images
        subgroups = None if self.subgroups is None else np.asarray(self.subgroups)[indices]
        return SplitData(images, np.asarray(self.labels)[indices], self.origin, subgroups)


@dataclass
class SourceData:
    name: str
    task: Task
    label_names: tuple[str, ...]
    channels: int
    splits: dict[str, SplitData]
    image_size: tuple[int, int] | None = None
    fixed_subsets: dict[float, SplitData] = field(default_factory=dict)  # fraction -> train subset
    skipped: list[str] = field(default_factory=list)  # bad items left out under --skip-bad
    expected_files: dict[str, str] = field(default_factory=dict)  # split -> file it would come from
    subgroup: str | None = None  # what every split's ``subgroups`` holds (a column name)
    notes: list[str] = field(default_factory=list)  # what was left out on purpose, for the summary
    modality: str | None = None  # what the images are, in words ("chest X-ray"), for captions
    # why images with the same content in two splits are expected (the official files hold some):
    # then they are a warning, not an error (data/duplicates.py); None for user data
    expected_duplicates: str | None = None


class DataSource(ABC):
    """A family of datasets addressed by one spec scheme (``medmnist:``, ``splits:``, ...)."""

    #: default data root when neither --data-root nor $MEDPEFT_DATA is given
    default_root: ClassVar[str | None] = None

    def __init__(self, spec: DataSpec, data_root: Path | None, skip_bad: bool = False):
        self.spec = spec
        self.data_root = data_root
        self.skip_bad = skip_bad

    @abstractmethod
    def read(self) -> SourceData:
        """Read labels and image references of all splits (images may stay lazy)."""


#: spec scheme -> source class; each source module registers itself here when imported (the
#: package imports them all), so a source never imports the package that imports it
SOURCES: Registry[type[DataSource]] = Registry("data source")
