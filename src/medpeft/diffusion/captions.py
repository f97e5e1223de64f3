"""A caption per image from its labels and its source, by templates the user can set.

    binary / multi-class:  "a chest X-ray, pneumonia", "a breast ultrasound, malignant"
    multi-label:           "a chest X-ray with effusion and cardiomegaly", "a chest X-ray with no finding"

The modality ("chest X-ray") is the data source's own (``DatasetInfo.modality``) unless the
config sets one; ``phrases`` replaces a label name by other words (``effusion: a left pleural
effusion``). The captions of a dataset are few (one per class, or one per combination of
findings), so each is encoded once.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..data.base import DatasetInfo
from .config import CaptionConfig


def join_words(words: list[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def modality_of(info: DatasetInfo, config: CaptionConfig) -> str:
    modality = config.modality or info.modality
    if not modality:
        raise ValueError(f"{info.name}: the data source does not say what its images are; set the "
                         "captions' modality (--modality, e.g. 'skin lesion photograph')")
    return modality


def caption(labels: np.ndarray, info: DatasetInfo, config: CaptionConfig) -> str:
    """The caption of one item with label row ``labels`` (shape (L,))."""
    modality = modality_of(info, config)
    phrase = lambda name: config.phrases.get(name, name)
    if info.task in ("binary", "multiclass"):
        return config.class_template.format(modality=modality, label=phrase(info.label_names[int(labels[0])]))
    present = [phrase(name) for name, on in zip(info.label_names, labels) if on]
    if not present:
        return config.no_finding_template.format(modality=modality)
    return config.findings_template.format(modality=modality, findings=join_words(present))


def captions_of(labels: np.ndarray, info: DatasetInfo, config: CaptionConfig) -> list[str]:
    """One caption per row of ``labels`` (N, L)."""
    return [caption(row, info, config) for row in labels]


def most_frequent(captions: list[str], count: int) -> list[str]:
    """The ``count`` most frequent captions (ties in first-seen order)."""
    return [text for text, _ in Counter(captions).most_common(count)]
