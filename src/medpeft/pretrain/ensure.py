"""Pretrain once, reuse afterwards: what a study's pretraining step calls to get its foundation model.

``ensure_pretrained(name, config)`` returns the named cache's checkpoint when its card says it
was made with exactly ``config``; otherwise it pretrains (resuming an interrupted attempt from
``$MEDPEFT_CACHE/pretrain-runs/<name>``), publishes the result under ``name`` and returns it.
A cached checkpoint of the same name made with another config is never replaced: that is a
``CheckpointConflict`` naming the differences (every run fine-tuned from the name, in any study,
would otherwise change meaning; a study's pretraining step without ``data`` pretrains on that
study's first dataset, so two studies can mean different things by one name). The skeleton is
the named cache's (:class:`medpeft.runtime.named_cache.CachedModel`); here is only how to pretrain.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..console import make_console
from .checkpoint import PretrainedCheckpoint
from .config import PretrainConfig
from .pretraining import pretrain


def ensure_pretrained(name: str, config: PretrainConfig, *, console: Console | None = None,
                      progress: bool = True) -> Path:
    """The cached checkpoint ``name`` made with ``config``."""
    cached = PretrainedCheckpoint(name, config)
    config, console = cached.config, console or make_console()

    def train(work: Path) -> None:
        console.print(f"pretraining {name!r} once ({config.backbone.name}, {config.train.epochs} epochs on "
                      f"{', '.join(config.data.specs)}); later runs reuse {cached.folder}")
        pretrain(config, work, resume=True, name=name, console=console, progress=progress)

    return cached.ensure(train) / cached.marker
