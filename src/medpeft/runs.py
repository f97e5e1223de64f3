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
