"""The run directory: the unit that training writes and evaluation, sweeps and reports read.

Layout (DESIGN.md): ``config.yaml``, ``metrics.json``, ``log.txt``, ``adapter_config.json`` +
``adapter_model.safetensors`` (the best weights: the method's trainable part), and
``checkpoint-last.pt`` while a run is unfinished (for ``--resume``). Every file is written
atomically (temporary file + rename), so a killed run leaves the previous version intact.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

import torch

from .config import load_yaml, save_json, save_yaml

CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "log.txt"
LAST_CHECKPOINT = "checkpoint-last.pt"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def is_complete(self) -> bool:
        return (self.path / METRICS).is_file()

    def save_config(self, values: dict) -> None:
        save_yaml(self.path / CONFIG, values)

    def load_config(self) -> dict:
        if not (self.path / CONFIG).is_file():
            raise FileNotFoundError(f"{self.path} is not a medpeft run directory (no {CONFIG})")
        return load_yaml(self.path / CONFIG)

    def start(self, config: dict, *, resume: bool, may_change: tuple[str, ...] = ("epochs",)) -> dict | None:
        """Open the run for training and save ``config``; return the checkpoint to resume from,
        or None for a fresh start. Refuses to overwrite a finished run, and refuses to resume
        under a config other than the saved one, except for the ``train`` fields in
        ``may_change`` (extending a run's epochs does not change the weights so far)."""
        state = self._resume_state(config, may_change) if resume else None
        if state is None and self.is_complete():
            raise ValueError(f"{self.path} already holds a finished run; choose another --out "
                             "(or delete it)")
        self.save_config(config)
        return state

    def _resume_state(self, config: dict, may_change: tuple[str, ...]) -> dict | None:
        state = self.load_checkpoint()
        if state is None:
            if self.is_complete():
                raise ValueError(f"{self.path} is already complete; nothing to resume")
            return None
        saved, ours = self.load_config(), dict(config)
        for values in (saved, ours):
            values["train"] = {k: v for k, v in values.get("train", {}).items() if k not in may_change}
        if saved != ours:
            differ = [k for k in ours if ours[k] != saved.get(k)]
            raise ValueError(f"{self.path} was started with a different config ({', '.join(differ)} "
                             "differ); resume with the same arguments, or start a new --out")
        return state

    def save_metrics(self, metrics: dict) -> None:
        save_json(self.path / METRICS, metrics)

    def load_metrics(self) -> dict:
        path = self.path / METRICS
        if not path.is_file():
            raise FileNotFoundError(f"{self.path}: no {METRICS} (the run has not finished)")
        return json.loads(path.read_text())

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().isoformat(timespec="seconds")
        with open(self.path / LOG, "a") as handle:
            handle.write(f"{stamp} {line}\n")

    def save_checkpoint(self, state: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(f".{LAST_CHECKPOINT}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        if not self.checkpoint_path.is_file():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)

    def remove_checkpoint(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)
