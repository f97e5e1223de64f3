"""Pretrained checkpoints in MAE's layout, their JSON cards, and publishing to the named cache.

``checkpoint-<epoch>.pth`` = ``{"model": state dict, "epoch": int, "config": dict}`` where the
state dict is the whole autoencoder with MAE's keys (timm ViT encoder + ``decoder_*`` +
``mask_token``); :func:`medpeft.models.load_pretrained` drops the decoder. Beside it,
``checkpoint-<epoch>.json`` says how it was made (data, epochs, sizes, loss curve, speed) and
which ``medpeft finetune`` flags rebuild the same backbone. Files are written atomically: a
failed write leaves no temporary file and the file as it was, and says which path failed.
:class:`PretrainedCheckpoint` is the named cache's view of a pretraining (made once, reused:
:mod:`medpeft.runtime.named_cache`).
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import torch
import torch.nn as nn

from ..serialization import atomic_write, load_json, save_json
from ..models.cache import publish_files, read_card
from ..runtime.named_cache import CachedModel
from ..runtime.rundir import METRICS
from .config import PretrainConfig

CARD_FORMAT = "medpeft-mae/1"


def save_checkpoint(path: Path, model: nn.Module, config: PretrainConfig, epoch: int, card: dict) -> Path:
    """Write ``path`` (.pth) and its card (.json) beside it; ``epoch`` counts from 1. A failed write
    (full disk, read-only folder, a file where a folder should be) is one ``OSError`` naming the
    path, and leaves no temporary file (``serialization.atomic_write``)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: torch.save({"model": state, "epoch": epoch, "config": config.to_dict()}, tmp))
    save_json(path.with_suffix(".json"), card)
    return path


def make_card(config: PretrainConfig, *, epoch: int, sources: list[tuple[str, int]], history: list[dict],
              img_per_s: float, wall_time_s: float, params: dict[str, int]) -> dict:
    config = config.resolved()  # the card records the size and statistics actually used
    backbone = config.backbone
    flags = f"--backbone {backbone.name} --img-size {backbone.img_size}"
    if backbone.patch_size is not None:
        flags += f" --patch-size {backbone.patch_size}"
    if backbone.timm_kwargs:
        flags += f" --timm-kwargs '{backbone.timm_kwargs}'"
    return {
        "format": CARD_FORMAT,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "data": list(config.data.specs),
        "data_root": config.data.data_root,
        "train_images": {name: n for name, n in sources},
        "epochs": epoch,
        "epochs_planned": config.train.epochs,
        "backbone": backbone.name,
        "img_size": backbone.img_size,
        "patch_size": backbone.patch_size,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "objective": config.objective,
        **({"mask_ratio": config.mae.mask_ratio,
            "decoder": {"dim": config.mae.decoder_dim, "depth": config.mae.decoder_depth,
                        "heads": config.mae.decoder_heads},
            "norm_pix_loss": config.mae.norm_pix_loss} if config.objective == "mae" else
           {"simclr": {"temperature": config.simclr.temperature, "projection_dim": config.simclr.projection_dim}}),
        "params": params,
        "loss_curve": [round(h["loss"], 5) for h in history],
        "val_loss_curve": [None if h["val_loss"] is None else round(h["val_loss"], 5) for h in history],
        "img_per_s": round(img_per_s, 1),
        "wall_time_s": round(wall_time_s, 1),
        "finetune_flags": f"{flags} --checkpoint <this file or cached name>",
        "config": config.to_dict(),
    }


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint-{epoch}.pth"


def card_files(checkpoint: Path) -> dict[str, Path]:
    """A checkpoint and its card (when it has one) under their names in the named cache."""
    card = checkpoint.with_suffix(".json")
    return {"checkpoint.pth": checkpoint, **({"card.json": card} if card.is_file() else {})}


def publish(checkpoint: Path, name: str) -> Path:
    """Copy a checkpoint and its card into the named cache, so ``--checkpoint NAME`` finds it."""
    return publish_files(name, card_files(checkpoint)) / "checkpoint.pth"


class PretrainedCheckpoint(CachedModel):
    """The cached checkpoint ``name`` made with ``config``: its card records the config, a
    pretraining run publishes its final ``checkpoint-<epochs>.pth``."""

    scratch, marker = "pretrain-runs", "checkpoint.pth"

    def __init__(self, name: str, config: PretrainConfig):
        self.config = config.resolved()
        super().__init__(name, self.config.to_dict())

    def read(self, values: dict) -> dict:
        return PretrainConfig.from_dict(values).resolved().to_dict()

    def published_config(self) -> dict | None:
        return read_card(self.folder / self.marker).get("config")

    def final(self, run: Path) -> Path:
        """The run's last checkpoint: ``checkpoint-<epochs>.pth``, or the earlier epoch its
        ``metrics.json`` names when the probe stopped it early."""
        metrics = run / METRICS
        if metrics.is_file():
            written = load_json(metrics, "pretraining metrics").get("checkpoint")
            if written:
                return run / Path(written).name
        return run / checkpoint_name(self.config.train.epochs)

    def files(self, run: Path) -> dict[str, Path]:
        return card_files(self.final(run))

    def finished(self) -> bool:
        return super().finished() and self.final(self.work).is_file()
