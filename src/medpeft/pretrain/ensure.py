"""Pretrain once, reuse afterwards: what a study's pretraining step calls to get its foundation model.

``ensure_pretrained(name, config)`` returns the named cache's checkpoint when its card says it
was made with exactly ``config``; otherwise it pretrains (resuming an interrupted attempt from
``$MEDPEFT_CACHE/pretrain-runs/<name>``), publishes the result under ``name`` and returns it.
A cached checkpoint of the same name made with another config is never replaced: that is a
``CheckpointConflict`` naming the differences (every run fine-tuned from the name, in any study,
would otherwise change meaning; a study's pretraining step without ``data`` pretrains on that
study's first dataset, so two studies can mean different things by one name).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from ..console import make_console
from ..models.cache import cache_root, checkpoint_dir
from ..runtime import RunDir
from .checkpoint import check_publishable, normalised, publish
from .config import PretrainConfig
from .pretraining import checkpoint_name, pretrain


def ensure_pretrained(name: str, config: PretrainConfig, *, console: Console | None = None,
                      progress: bool = True) -> Path:
    """The cached checkpoint ``name`` made with ``config``."""
    config = config.resolved()
    console = console or make_console()
    wanted = config.to_dict()
    published = checkpoint_dir(name) / "checkpoint.pth"
    if published.is_file():
        check_publishable(name, config)  # made with exactly this config, or a CheckpointConflict
        return published
    work = cache_root() / "pretrain-runs" / name
    if work.exists() and normalised(_saved_config(work)) != wanted:
        shutil.rmtree(work)  # our own scratch folder, from an older config
    final = work / checkpoint_name(config.train.epochs)
    if RunDir(work).is_complete() and final.is_file():  # finished, but never published
        return publish(final, name)
    console.print(f"pretraining {name!r} once ({config.backbone.name}, {config.train.epochs} epochs on "
                  f"{', '.join(config.data.specs)}); later runs reuse {checkpoint_dir(name)}")
    pretrain(config, work, resume=True, name=name, console=console, progress=progress)
    return checkpoint_dir(name) / "checkpoint.pth"


def _saved_config(work: Path) -> dict | None:
    try:
        return RunDir(work).load_config()
    except FileNotFoundError:
        return None
