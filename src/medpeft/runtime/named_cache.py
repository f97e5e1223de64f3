"""Made once, reused afterwards: the named cache's ensure/publish, shared by pretraining and diffusion.

A model in the named cache (``$MEDPEFT_CACHE/checkpoints/<name>``, :mod:`medpeft.models.cache`)
is made from one config. :class:`CachedModel` does what every kind of cached model does alike:

- reuse: a published model made with the wanted config is returned as it is. Configs compare as
  today's code reads them (:meth:`CachedModel.as_read_today`: an option added since gets its
  default), so a model cached before a new option existed is reused, not remade;
- refuse: a published model made with another config is never replaced (``CheckpointConflict``
  naming the differences): every run built on the name would otherwise change meaning;
- make: otherwise the model is trained in its scratch run ``$MEDPEFT_CACHE/<scratch>/<name>``
  (an interrupted attempt resumes; a scratch run of another config is removed; the run's lock
  gives another process ``RunInUse``) and published. A finished scratch run that was never
  published is published without training. Publishing is atomic
  (:func:`medpeft.models.cache.publish_files`).

A subclass says what differs: its scratch folder, the file that marks a published model, how a
saved config is read today, which files a finished run publishes, and (in :meth:`ensure`'s
``train``) how to train.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from ..models.cache import cache_root, checkpoint_dir, publish_files, refuse_other_config
from .rundir import CONFIG, RunDir


class CachedModel:
    """The cached model ``name`` as ``wanted`` (a config dict as today's code writes it) makes it."""

    scratch = ""  # where it is trained, under the cache root (e.g. "pretrain-runs")
    marker = ""  # the file of a published folder that says the model is there

    def __init__(self, name: str, wanted: dict):
        self.name, self.wanted = name, wanted
        self.folder = checkpoint_dir(name)  # a bad name fails here, before anything runs
        self.work = cache_root() / self.scratch / name

    # -- what differs ----------------------------------------------------------------------
    def read(self, values: dict) -> dict:
        """A saved config as today's code writes it; ValueError or TypeError when it no longer reads."""
        raise NotImplementedError

    def files(self, run: Path) -> dict[str, Path]:
        """What a finished run publishes: file name in the cache -> file in ``run``."""
        raise NotImplementedError

    def published_config(self) -> dict | None:
        """The config the published model records, as saved (by default its ``config.yaml``)."""
        return RunDir(self.folder).load_config()

    def finished(self) -> bool:
        """The scratch run is done, so publishing needs no training."""
        return RunDir(self.work).is_complete()

    # -- what is alike ---------------------------------------------------------------------
    @property
    def published(self) -> bool:
        return (self.folder / self.marker).is_file()

    def as_read_today(self, values: dict | None) -> dict | None:
        """``values`` through :meth:`read`; None when there are none or they no longer read."""
        if values is None:
            return None
        try:
            return self.read(values)
        except (ValueError, TypeError):
            return None

    def check_publishable(self) -> None:
        """Raise ``CheckpointConflict`` when the name holds a model made with another config;
        one made with the wanted config may be published again."""
        if self.published:
            refuse_other_config(self.name, self.as_read_today(self.published_config()), self.wanted)

    def publish(self, run: Path) -> Path:
        """Copy a finished run's files into the named cache; returns the cached folder."""
        return publish_files(self.name, self.files(Path(run)))

    def ensure(self, train: Callable[[Path], object]) -> Path:
        """The cached folder, made first when missing: ``train(work)`` trains into the scratch
        run (resuming it) and publishes it under the name."""
        if self.published:
            self.check_publishable()  # made with exactly the wanted config, or a CheckpointConflict
            return self.folder
        if (self.work / CONFIG).is_file() and self.as_read_today(RunDir(self.work).load_config()) != self.wanted:
            shutil.rmtree(self.work)  # our own scratch run, from another config
        if self.finished():  # finished, but never published
            return self.publish(self.work)
        train(self.work)  # raises RunInUse while another process trains it
        return self.folder
