"""The data contract every source fulfils (see docs/architecture.md, "Data specs").

A source turns a spec into images + labels per split; everything after that (fractions,
transforms, loaders, training) sees only :class:`MedicalDataset` and :class:`DatasetInfo`.

Labels are stored as an integer array of shape ``(N, L)``:
- ``binary``:     L = 1, values 0/1; ``label_names`` holds the two class names (negative first),
- ``multiclass``: L = 1, the class index; ``label_names`` holds the C class names,
- ``multilabel``: L = number of findings, values 0/1; ``label_names`` names each column.

Subgroups (``csv:...?subgroup=<column>``, e.g. sex or Fitzpatrick skin type) are one string
per item, ``MedicalDataset.subgroups``, kept aligned with the items through ``subset()`` and
the training fractions; ``DatasetInfo.subgroup`` names the column. They are for evaluation per
subgroup and never reach the model.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from . import decode  # imports no decoding library until a file is read
from .errors import DataError, ImageTooLarge, UnsupportedImage  # noqa: F401 (their old home: re-exported)

Task = Literal["binary", "multiclass", "multilabel"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: Task
    label_names: tuple[str, ...]
    split_sizes: Mapping[str, int]
    channels: int
    image_size: tuple[int, int] | None = None  # native (H, W) when all images share one
    subgroup: str | None = None  # what MedicalDataset.subgroups holds (a column name), if any
    modality: str | None = None  # what the images are, in words ("chest X-ray"), when the source knows

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "binary" and len(self.label_names) != 2:
            raise ValueError(f"a binary task names its two classes, got {self.label_names}")

    @property
    def num_outputs(self) -> int:
        """Width of the classifier head: one logit for binary, else one per label/class."""
        return 1 if self.task == "binary" else len(self.label_names)

    @property
    def column_names(self) -> tuple[str, ...]:
        """What each output column scores (the positive class for binary tasks)."""
        return (self.label_names[1],) if self.task == "binary" else self.label_names


def positives_per_label(labels: np.ndarray, info: DatasetInfo) -> dict[str, int]:
    """Positives per finding (multilabel, binary) or examples per class (multiclass)."""
    if info.task == "multiclass":
        counts = np.bincount(labels[:, 0], minlength=len(info.label_names))
        return dict(zip(info.label_names, counts.tolist()))
    return dict(zip(info.column_names, labels.sum(axis=0).astype(int).tolist()))


class ImageStore(Protocol):
    """Where a split's images come from: arrays in memory or files on disk."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> np.ndarray:
        """float32 image in [0, 1], shape (H, W) or (H, W, C)."""

    def describe(self, index: int) -> str:
        """Where item ``index`` comes from, for error messages (file and line)."""

    def subset(self, indices: Sequence[int]) -> "ImageStore": ...


class ArrayImages:
    """uint8 images held in memory (MedMNIST, synthetic data): (N, H, W) or (N, H, W, C)."""

    def __init__(self, array: np.ndarray, origin: str, cache_key: tuple | None = None):
        if array.dtype != np.uint8 or array.ndim not in (3, 4):
            raise DataError(f"{origin}: expected uint8 images (N,H,W[,C]), got {array.dtype} {array.shape}")
        self.array = array
        self.origin = origin
        self.cache_key = cache_key  # names these exact arrays across loads (file, size, mtime, split)
        self.digests: list[bytes] | None = None  # content digests, once computed (data/duplicates.py)

    def __len__(self) -> int:
        return len(self.array)

    def load(self, index: int) -> np.ndarray:
        return self.array[index].astype(np.float32) / 255.0

    def describe(self, index: int) -> str:
        return f"{self.origin}[{index}]"

    def subset(self, indices: Sequence[int]) -> "ArrayImages":
        indices = np.asarray(indices, dtype=np.int64)
        subset = ArrayImages(self.array[indices], self.origin)
        subset.digests = None if self.digests is None else [self.digests[i] for i in indices]
        return subset


#: what to do about an image that fails to decode during training, by whether it decoded at load
_ADVICE = {
    False: ("fix or remove the file, or pass --skip-bad (skip_bad=True): it decodes every image "
            "when the dataset is loaded and leaves out, with a warning, those that fail"),
    True: ("it decoded when the dataset was loaded, so the file has changed since; restore it, "
           "or load the dataset again"),
}


class FileImages:
    """Image files decoded on access; ``origins[i]`` says which list file and line named it.

    ``decoded`` records that every file decoded once when the dataset was loaded (``verify=
    "decode"``, implied by ``skip_bad``), which changes the advice a later failure gives;
    ``digests`` then holds each image's pixel digest (data/duplicates.py). ``checked``: every
    file was found at load (``verify`` other than ``none``).
    """

    def __init__(self, paths: Sequence, origins: Sequence[str], decoded: bool = False):
        if len(paths) != len(origins):
            raise ValueError("one origin per path")
        self.paths = list(paths)
        self.origins = list(origins)
        self.decoded = decoded
        self.checked = decoded
        self.digests: list[bytes] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        try:
            return decode.read_image(self.paths[index])  # through the module: a test may spy on it
        except DataError as err:
            raise DataError(f"{err} (listed at {self.origins[index]}); "
                            f"{_ADVICE[self.decoded]}") from None

    def describe(self, index: int) -> str:
        return f"{self.paths[index]} (listed at {self.origins[index]})"

    def subset(self, indices: Sequence[int]) -> "FileImages":
        subset = FileImages([self.paths[i] for i in indices], [self.origins[i] for i in indices],
                            self.decoded)
        subset.checked = self.checked
        subset.digests = None if self.digests is None else [self.digests[i] for i in indices]
        return subset


class MedicalDataset(Dataset):
    """``(image tensor, label)`` pairs of one split; ``label`` is a float vector of length
    ``info.num_outputs`` for binary/multilabel tasks and an int64 class index for multiclass.

    ``subgroups``: None, or a string array of shape (N,) with item i's subgroup value
    (``""`` where the table had none); ``info.subgroup`` says what it is.
    """

    def __init__(self, images: ImageStore, labels: np.ndarray, info: DatasetInfo, split: str,
                 transform: Callable[[np.ndarray], torch.Tensor] | None = None,
                 subgroups: Sequence[str] | np.ndarray | None = None):
        labels = np.asarray(labels)
        if labels.ndim != 2 or len(labels) != len(images):
            raise ValueError(f"labels must be (N, L) with N = {len(images)} images, got {labels.shape}")
        if subgroups is not None:
            subgroups = np.asarray(subgroups, dtype=str)
            if subgroups.shape != (len(images),):
                raise ValueError(f"subgroups must be (N,) with N = {len(images)} images, "
                                 f"got {subgroups.shape}")
        self.images = images
        self.labels = labels.astype(np.int64)
        self.info = info
        self.split = split
        self.transform = transform
        self.subgroups = subgroups

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.images.load(index)
        if self.transform is not None:
            image = self.transform(image)
        else:
            image = torch.from_numpy(np.ascontiguousarray(image))
        return image, self.target(index)

    def target(self, index: int) -> torch.Tensor:
        if self.info.task == "multiclass":
            return torch.tensor(self.labels[index, 0], dtype=torch.int64)
        return torch.from_numpy(self.labels[index].astype(np.float32))

    def subset(self, indices: Sequence[int]) -> "MedicalDataset":
        indices = np.asarray(indices, dtype=np.int64)
        subgroups = None if self.subgroups is None else self.subgroups[indices]
        return MedicalDataset(self.images.subset(indices), self.labels[indices], self.info,
                              self.split, self.transform, subgroups)

    def with_transform(self, transform) -> "MedicalDataset":
        return MedicalDataset(self.images, self.labels, self.info, self.split, transform,
                              self.subgroups)


@dataclass
class DataSplits:
    """What :func:`medpeft.data.load_dataset` returns: the three splits and how train was cut."""

    info: DatasetInfo
    train: MedicalDataset
    val: MedicalDataset
    test: MedicalDataset
    fraction: float = 1.0
    subset_note: str = "all training labels"
    full_train_size: int = 0
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. rows dropped by drop=, files excluded
    duplicates: object = None  # data/duplicates.py Duplicates: what was counted at load (None: not checked)

    def split(self, name: str) -> MedicalDataset:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def with_transforms(self, train, evaluation) -> "DataSplits":
        return DataSplits(self.info, self.train.with_transform(train), self.val.with_transform(evaluation),
                          self.test.with_transform(evaluation), self.fraction, self.subset_note,
                          self.full_train_size, self.skipped, self.notes, self.duplicates)


class BadItems:
    """Collects unreadable items while a source reads its lists.

    Without ``skip_bad`` the first problem ends reading with one error naming file and line;
    with it, every bad item is left out and listed in one warning, so nothing vanishes silently.
    """

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.items: list[str] = []

    def report(self, where: str, problem: str) -> None:
        message = f"{where}: {problem}"
        if not self.skip_bad:
            raise DataError(message + " (pass --skip-bad to leave such items out with a warning)")
        self.items.append(message)

    def warn(self, context: str) -> None:
        if self.items:
            shown = "\n  ".join(self.items[:20])
            more = f"\n  ... and {len(self.items) - 20} more" if len(self.items) > 20 else ""
            warnings.warn(f"{context}: skipped {len(self.items)} bad item(s):\n  {shown}{more}",
                          stacklevel=2)
