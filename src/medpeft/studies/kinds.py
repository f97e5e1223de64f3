"""Study kinds: which kind of cells a study file holds, and what a kind is made of.

A study file names its kind in a top-level ``kind: classifier | diffusion``. Without it, a file
with both ``base`` and ``judge`` is a diffusion study (the diffusion study files written before
``kind:`` existed) and any other file a classifier study. ``kind`` is no field of either study
dataclass: each reader checks it and drops it (:func:`take_kind`), so adding ``kind:`` to an old
file changes no cell key. The kinds themselves are ``studies/runner.py`` ``CLASSIFIER`` and
``studies/generative.py`` ``DIFFUSION``; ``runner.kind_of`` picks one for a file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

KINDS = ("classifier", "diffusion")


@dataclass(frozen=True)
class StudyKind:
    """What kind of cells a study file holds: how to read it and the engine that runs its cells
    (every kind's workers are ``medpeft study worker``)."""

    name: str  # one of KINDS, as study files write it
    load: Callable  # path -> the validated study
    engine: type  # the studies.engine.Engine (sub)class that runs its cells


def study_kind(values: dict, where: str | Path) -> str:
    """The kind a study file's values declare (see the module docstring); an unknown ``kind`` is an error."""
    kind = values.get("kind")
    if kind is None:
        return "diffusion" if "base" in values and "judge" in values else "classifier"
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown study kind {kind!r}; kind must be one of {', '.join(KINDS)}")
    return kind


def take_kind(values: dict, where: str | Path, expected: str) -> None:
    """Check a study file's kind before its values become a study (``kind`` itself is removed)."""
    kind = study_kind(values, where)
    values.pop("kind", None)
    if kind != expected:
        raise ValueError(f"{where}: a {kind} study, not a {expected} study")


def work_dir_of(path: str | Path, work_dir: str | Path | None) -> Path:
    """Where a study's storage, runs and logs live: ``--dir``, else the study file's folder."""
    path = Path(path)
    return Path(work_dir) if work_dir else (path if path.is_dir() else path.parent)
