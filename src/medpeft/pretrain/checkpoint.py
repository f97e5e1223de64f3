"""Pretrained checkpoints in MAE's layout, their JSON cards, and publishing to the named cache.

``checkpoint-<epoch>.pth`` = ``{"model": state dict, "epoch": int, "config": dict}`` where the
state dict is the whole autoencoder with MAE's keys (timm ViT encoder + ``decoder_*`` +
``mask_token``); :func:`medpeft.models.load_pretrained` drops the decoder. Beside it,
``checkpoint-<epoch>.json`` says how it was made (data, epochs, sizes, loss curve, speed) and
which ``medpeft finetune`` flags rebuild the same backbone. Files are written atomically.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path

import torch
import torch.nn as nn

from ..serialization import save_json
from ..models.cache import checkpoint_dir, read_card, refuse_other_config
from .config import PretrainConfig

CARD_FORMAT = "medpeft-mae/1"


def save_checkpoint(path: Path, model: nn.Module, config: PretrainConfig, epoch: int, card: dict) -> Path:
    """Write ``path`` (.pth) and its card (.json) beside it; ``epoch`` counts from 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": state, "epoch": epoch, "config": config.to_dict()}, tmp)
    os.replace(tmp, path)
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


def cached_config(name: str) -> dict | None:
    """The config the cached checkpoint ``name`` was made with, if it has a card, read with
    today's defaults (so an option added to medpeft since does not remake the checkpoint)."""
    path = checkpoint_dir(name) / "checkpoint.pth"
    values = read_card(path).get("config") if path.is_file() else None
    return normalised(values)


def normalised(values: dict | None) -> dict | None:
    """A saved pretraining config as today's code reads it (None when it no longer parses)."""
    if values is None:
        return None
    try:
        return PretrainConfig.from_dict(values).resolved().to_dict()
    except (ValueError, TypeError):
        return None


def check_publishable(name: str, config: PretrainConfig) -> None:
    """Raise ``CheckpointConflict`` when the named cache holds a checkpoint made with another
    config (publishing would replace it); a checkpoint made with ``config`` may be re-published."""
    if (checkpoint_dir(name) / "checkpoint.pth").is_file():
        refuse_other_config(name, cached_config(name), config.resolved().to_dict())


def publish(checkpoint: Path, name: str) -> Path:
    """Copy a checkpoint and its card into the named cache, so ``--checkpoint NAME`` finds it."""
    folder = checkpoint_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").unlink(missing_ok=True)  # no stale card beside a half-replaced file
    target = folder / "checkpoint.pth"
    tmp = folder / ".checkpoint.pth.tmp"
    shutil.copyfile(checkpoint, tmp)
    os.replace(tmp, target)
    card = checkpoint.with_suffix(".json")
    if card.is_file():
        shutil.copyfile(card, folder / ".card.json.tmp")
        os.replace(folder / ".card.json.tmp", folder / "card.json")
    return target
