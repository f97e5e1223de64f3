"""The run directory: the unit that training writes and evaluation, studies and reports read.

Layout (docs/architecture.md, "Run directory"): ``config.yaml``, ``metrics.json``, ``log.txt``,
``adapter_config.json`` + ``adapter_model.safetensors`` (the best weights: the method's trainable
part), and ``checkpoint-last.pt`` while a run is unfinished (for ``--resume``). Every file is written
atomically (temporary file + rename), so a killed run leaves the previous version intact.

Safety rules, enforced by :meth:`RunDir.start` while the caller holds :meth:`RunDir.lock`:
- one process at a time: the directory is locked (``flock`` on the folder itself, released by
  the kernel when the process dies, so a SIGKILL leaves no stale lock);
- a finished run is never overwritten, and an unfinished one is never silently restarted;
- a checkpoint resumes only under the config it was made with: it carries a digest of that
  config, checked against ``config.yaml`` and the new config;
- a fresh start begins a fresh ``log.txt`` (a start that failed before its first checkpoint, e.g.
  on data found bad, leaves a log the next run does not append to).

A write that fails (disk full, read-only) raises an ``OSError`` naming the file and leaves no
temporary file; the checkpoint already on disk stays (``serialization.atomic_write``).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Callable

import torch

from ..serialization import atomic_write, load_json, load_yaml, save_json, save_yaml

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None

CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "log.txt"
LAST_CHECKPOINT = "checkpoint-last.pt"


# metrics.json keys whose value (or whose values, in a list or mapping) are numbers, NaN when undefined
NUMBER_KEYS = frozenset({"auroc", "auroc_ci95", "auroc_per_label", "auroc_gap", "acc", "f1_macro",
                         "acc_at_val_threshold", "f1_macro_at_val_threshold", "thresholds", "val_auroc",
                         "val_acc", "train_loss", "val_loss", "lr"})


def metrics_from_json(values, numeric: bool = False):
    """Metrics as read from strict JSON, with ``null`` under a :data:`NUMBER_KEYS` key back to NaN
    (so readers compare and format them as the NaN they were when written)."""
    if isinstance(values, dict):
        return {key: metrics_from_json(item, numeric or key in NUMBER_KEYS) for key, item in values.items()}
    if isinstance(values, list):
        return [metrics_from_json(item, numeric) for item in values]
    return math.nan if numeric and values is None else values


class RunInUse(ValueError):
    """Another process holds the run directory."""


def run_slug(*parts) -> str:
    """A folder name from parts such as ('medmnist:pneumoniamnist', 'vit_tiny', 'lora', 'f0.1'):
    anything but letters, digits, '.', '_' and '-' becomes '-' (the one naming rule of run folders)."""
    cleaned = [re.sub(r"[^A-Za-z0-9._]+", "-", str(p).split("?")[0]).strip("-.") for p in parts]
    return "-".join(p for p in cleaned if p) or "run"


def config_digest(config: dict, may_change: tuple[str, ...] = ()) -> str:
    """sha256 of a run config without the ``train`` fields that may change on resume."""
    values = dict(config)
    values["train"] = {k: v for k, v in (values.get("train") or {}).items() if k not in may_change}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def is_complete(self) -> bool:
        return (self.path / METRICS).is_file()

    def is_unfinished(self) -> bool:
        """Started and checkpointed, not finished: ``--resume`` continues it."""
        return self.checkpoint_path.is_file() and not self.is_complete()

    @contextlib.contextmanager
    def lock(self):
        """Hold the directory for this process; another process gets :class:`RunInUse` at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield self
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunInUse(f"{self.path} is in use by another medpeft process; wait for it to finish "
                           "or choose another --out") from None
        self._lock_fd = fd
        try:
            yield self
        finally:
            self._lock_fd = None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def save_config(self, values: dict) -> None:
        save_yaml(self.path / CONFIG, values)

    def load_config(self) -> dict:
        if not (self.path / CONFIG).is_file():
            raise FileNotFoundError(f"{self.path} is not a medpeft run directory (no {CONFIG})")
        return load_yaml(self.path / CONFIG)

    def start(self, config: dict, *, resume: bool, may_change: tuple[str, ...] = ("epochs",),
              read: Callable[[dict], dict] | None = None) -> dict | None:
        """Open the run for training and save ``config``; return the checkpoint to resume from,
        or None for a fresh start. Refuses to overwrite a finished run or to restart an
        unfinished one without ``resume``, and to resume under a config other than the saved
        one, except for the ``train`` fields in ``may_change`` (more epochs do not change the
        weights so far).

        ``read`` turns a saved config into the form today's code writes (new fields at their
        defaults, unset fields resolved), so a run started by an earlier medpeft resumes when
        only the spelling of its config changed; the checkpoint is then re-stamped."""
        if fcntl is not None and self._lock_fd is None:
            raise AssertionError("RunDir.start needs the directory lock: use `with run.lock():`")
        if self.is_complete():
            raise ValueError(f"{self.path} already holds a finished run; choose another --out (or delete it)")
        state = None
        if self.checkpoint_path.is_file():
            if not resume:
                raise ValueError(f"{self.path} holds an unfinished run ({LAST_CHECKPOINT}); pass --resume "
                                 "to continue it, or choose another --out (or delete it) to start over")
            state = self._checked_state(config, may_change, read)
            digest = config_digest(config, may_change)
            if state.get("config_digest") != digest:  # same run, config written by an earlier medpeft
                self.save_checkpoint({k: v for k, v in state.items() if k != "config_digest"}, config,
                                     may_change)
                state["config_digest"] = digest
        else:  # a fresh start: a log left by a start that failed before its first checkpoint is not this run's
            (self.path / LOG).unlink(missing_ok=True)
        self.save_config(config)
        return state

    def _checked_state(self, config: dict, may_change: tuple[str, ...], read) -> dict:
        state = self.load_checkpoint()
        raw = self.load_config()
        try:
            saved = read(raw) if read is not None else raw
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{self.path / CONFIG} cannot be read by this medpeft ({err}); start a new "
                             "--out") from None
        if config_digest(saved, may_change) != config_digest(config, may_change):
            strip = lambda values: {**values, "train": {k: v for k, v in values.get("train", {}).items()
                                                        if k not in may_change}}
            ours, theirs = strip(config), strip(saved)
            differ = [k for k in ours if ours[k] != theirs.get(k)] or ["config"]
            raise ValueError(f"{self.path} was started with a different config ({', '.join(differ)} "
                             "differ); resume with the same arguments, or start a new --out")
        if state.get("config_digest") not in {config_digest(raw, may_change), config_digest(saved, may_change)}:
            raise ValueError(f"{self.checkpoint_path} does not belong to {self.path / CONFIG} (it was "
                             "written under another config); delete it to start the run over")
        return state

    def save_metrics(self, metrics: dict) -> None:
        save_json(self.path / METRICS, metrics)

    def load_metrics(self) -> dict:
        """``metrics.json``, with the metrics written as ``null`` (strict JSON for NaN) read back as NaN."""
        path = self.path / METRICS
        if not path.is_file():
            raise FileNotFoundError(f"{self.path}: no {METRICS} (the run has not finished)")
        return metrics_from_json(load_json(path, "metrics file"))

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path / LOG, "a") as handle:
            handle.write(f"{stamp} {line}\n")

    def save_checkpoint(self, state: dict, config: dict, may_change: tuple[str, ...] = ("epochs",)) -> None:
        """Write ``checkpoint-last.pt`` atomically, stamped with the digest of ``config``."""
        stamped = {**state, "config_digest": config_digest(config, may_change)}
        atomic_write(self.checkpoint_path, lambda tmp: torch.save(stamped, tmp))  # a failed write keeps the last

    def load_checkpoint(self) -> dict | None:
        """The last checkpoint, or None; a file that cannot be read safely is a clear error."""
        if not self.checkpoint_path.is_file():
            return None
        fix = "delete it to start the run over (the finished epochs are lost)"
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise ValueError(f"{self.checkpoint_path} is not a weights-only checkpoint (it holds "
                             f"arbitrary Python objects, which medpeft never unpickles); {fix}") from None
        except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            reason = str(err).splitlines()[0][:120]
            raise ValueError(f"{self.checkpoint_path} cannot be read ({reason}): it is truncated or "
                             f"corrupt; {fix}") from None
        if not isinstance(state, dict) or not {"epoch", "model", "optimizer"} <= set(state):
            raise ValueError(f"{self.checkpoint_path} is not a medpeft training checkpoint; {fix}")
        return state

    def remove_checkpoint(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)
