"""The MAE pretraining loop: unlabeled images in, MAE-layout checkpoints out.

Per epoch: train with AdamW (MAE's betas 0.9/0.95, no decay on biases, norms and tokens) under
the per-iteration warmup-cosine schedule of :mod:`medpeft.train.schedule`, score the masked-
patch loss of a fixed set of validation images under fixed masks (comparable across epochs),
and write ``checkpoint-last.pt`` (with optimizer state, for ``--resume``) plus
``checkpoint-<epoch>.pth`` at the ``save_at`` epochs. At the end: the final
``checkpoint-<epochs>.pth`` and its card, ``reconstruction.png``, ``metrics.json``, and with
``name`` a copy in the named cache. Every epoch reseeds from (seed, epoch), as the
fine-tuning loop does, so a resumed run ends with the same weights as an uninterrupted one.

Borrowed from facebookresearch/mae ``main_pretrain.py`` / ``engine_pretrain.py``: the
optimizer settings, the blr convention and the per-iteration schedule.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch
from rich.console import Console
from timm.optim import param_groups_weight_decay
from torch.utils.data import DataLoader

from ..runs import RunDir
from ..train.build import autocast_for, resolve_device, seed_everything
from ..train.progress import EpochProgress
from ..train.schedule import lr_at, set_lr
from ..train.step import optimizer_step
from .checkpoint import make_card, publish, save_checkpoint
from .config import PretrainConfig
from .data import UnlabeledData, load_unlabeled
from .figure import save_reconstruction_figure
from .mae import MaskedAutoencoderViT, build_mae, kept_count

FIGURE = "reconstruction.png"
VAL_MASK_SEED = 1234  # the held-out loss always hides the same patches


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint-{epoch}.pth"


def build_optimizer(model: MaskedAutoencoderViT, config: PretrainConfig) -> torch.optim.AdamW:
    groups = param_groups_weight_decay(model, config.train.weight_decay,
                                       no_weight_decay_list=model.no_weight_decay())
    return torch.optim.AdamW(groups, lr=config.train.learning_rate(), betas=config.train.betas)


def pretrain(config: PretrainConfig, out_dir, *, resume: bool = False, name: str | None = None,
             console: Console | None = None, progress: bool = True) -> dict:
    """Pretrain an MAE into ``out_dir`` and return its summary (also in ``metrics.json``)."""
    console = console or Console()
    run = RunDir(out_dir)
    # where extra checkpoints go, and how many epochs, do not change the weights so far
    state = run.start(config.to_dict(), resume=resume, may_change=("epochs", "save_at"))
    train = config.train
    device = resolve_device(train.device)
    autocast = autocast_for(device, train.precision)

    data = load_unlabeled(config.data, config.backbone, train.val_images)
    seed_everything(train.seed)
    model = build_mae(config.backbone, config.mae).to(device)
    optimizer = build_optimizer(model, config)
    params = _describe(model, optimizer, config, data, device, console)

    steps_per_epoch = math.ceil(len(data.train) / train.batch_size)
    schedule = dict(lr=train.learning_rate(), min_lr=train.min_lr,
                    warmup_steps=train.warmup_epochs * steps_per_epoch,
                    total_steps=train.epochs * steps_per_epoch)
    history, start_epoch, elapsed, images_seen, train_seconds = [], 0, 0.0, 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch = state["history"], state["epoch"] + 1
        elapsed, images_seen, train_seconds = state["elapsed"], state["images_seen"], state["train_seconds"]
        console.print(f"resuming {run.path} after epoch {start_epoch}")
        run.log(f"resumed after epoch {start_epoch}")
    else:
        run.log(f"start: {data.describe()}; {params}")

    started = time.perf_counter()
    for epoch in range(start_epoch, train.epochs):
        seed = train.seed * 100_003 + epoch
        seed_everything(seed)
        loader = DataLoader(data.train, batch_size=train.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed), num_workers=train.num_workers,
                            pin_memory=device.type == "cuda")
        epoch_start = time.perf_counter()
        loss, seen = _train_one_epoch(model, loader, optimizer, epoch, steps_per_epoch, schedule,
                                      config, device, autocast, run, progress, console)
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        images_seen += seen
        val_loss = heldout_loss(model, data.val, train.batch_size, device, autocast)
        history.append({"epoch": epoch + 1, "loss": loss, "val_loss": val_loss,
                        "lr": optimizer.param_groups[0]["lr"], "img_per_s": seen / seconds,
                        "seconds": seconds})
        val_text = f"  val loss {val_loss:.4f}" if val_loss is not None else ""
        line = (f"epoch {epoch + 1}/{train.epochs}  loss {loss:.4f}{val_text}  "
                f"{seen / seconds:.0f} img/s  {seconds:.0f} s")
        console.print(line)
        run.log(line)
        now = time.perf_counter()
        if epoch + 1 in train.save_at and epoch + 1 < train.epochs:
            _save_numbered(run.path, model, config, epoch + 1, data, history,
                           images_seen / train_seconds, elapsed + now - started, params)
        run.save_checkpoint({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "history": history, "elapsed": elapsed + now - started,
                             "images_seen": images_seen, "train_seconds": train_seconds})
    elapsed += time.perf_counter() - started
    return _finish(run, model, config, data, history, images_seen / max(train_seconds, 1e-9),
                   elapsed, params, device, name, console)


def _train_one_epoch(model, loader, optimizer, epoch, steps_per_epoch, schedule, config, device,
                     autocast, run, progress, console) -> tuple[float, int]:
    model.train()
    train = config.train
    total_loss, seen = 0.0, 0
    with EpochProgress(len(loader), f"epoch {epoch + 1}/{train.epochs}", console, enabled=progress) as bar:
        for step, images in enumerate(loader):
            set_lr(optimizer, lr_at(epoch * steps_per_epoch + step, **schedule))
            images = images.to(device, non_blocking=True)
            with autocast or contextlib.nullcontext():
                loss = model(images).loss
            optimizer_step(loss, model, optimizer, train.clip_grad, epoch=epoch, step=step, run=run)
            total_loss += loss.item() * len(images)
            seen += len(images)
            bar.advance(loss=total_loss / seen, images=len(images))
    return total_loss / max(seen, 1), seen


@torch.no_grad()
def heldout_loss(model: MaskedAutoencoderViT, images, batch_size: int, device, autocast) -> float | None:
    """Mean masked-patch loss over ``images`` with the same masks every time."""
    if len(images) == 0:
        return None
    model.eval()
    generator = torch.Generator().manual_seed(VAL_MASK_SEED)
    total = 0.0
    for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
        with autocast or contextlib.nullcontext():
            total += model(batch.to(device), generator=generator).loss.item() * len(batch)
    return total / len(images)


def _save_numbered(folder: Path, model, config, epoch, data: UnlabeledData, history, img_per_s,
                   wall_time_s, params) -> Path:
    card = make_card(config, epoch=epoch, sources=data.sources, history=history, img_per_s=img_per_s,
                     wall_time_s=wall_time_s, params=params)
    return save_checkpoint(folder / checkpoint_name(epoch), model, config, epoch, card)


def _finish(run, model, config, data, history, img_per_s, elapsed, params, device, name, console) -> dict:
    train = config.train
    final = _save_numbered(run.path, model, config, train.epochs, data, history, img_per_s, elapsed, params)
    console.print(f"checkpoint: {final}")
    figure = None
    if train.figure_images and len(data.val):
        picks = torch.linspace(0, len(data.val) - 1, min(train.figure_images, len(data.val))).round().long()
        images = torch.stack([data.val[int(i)] for i in picks]).to(device)
        figure = save_reconstruction_figure(
            model, images, run.path / FIGURE, mean=config.backbone.mean, std=config.backbone.std,
            title=f"MAE {config.backbone.name}, {config.backbone.img_size} px, mask "
                  f"{config.mae.mask_ratio:g}, epoch {train.epochs}")
        console.print(f"reconstruction figure: {figure}")
    summary = {"checkpoint": str(final), "epochs": train.epochs, "final_loss": history[-1]["loss"],
               "final_val_loss": history[-1]["val_loss"], "img_per_s": round(img_per_s, 1),
               "wall_time_s": round(elapsed, 1), "params": params,
               "figure": str(figure) if figure else None, "history": history}
    if name:
        summary["cached"] = str(publish(final, name))
        console.print(f"published as {name!r}: {summary['cached']} (use --checkpoint {name})")
    run.save_metrics(summary)
    if not train.keep_checkpoint:
        run.remove_checkpoint()
    run.log(f"done: loss {history[-1]['loss']:.4f}, {img_per_s:.0f} img/s, {elapsed:.0f} s")
    return summary


def _describe(model, optimizer, config, data, device, console) -> dict[str, int]:
    """Print the resolved setup (nanoGPT's habit) and return parameter counts."""
    encoder_keys = set(model.encoder_keys())
    trainable = [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]
    encoder = sum(size for n, size in trainable if n in encoder_keys)
    decoder = sum(size for n, size in trainable if n not in encoder_keys)
    groups = ", ".join(f"{len(g['params'])} tensors / {sum(p.numel() for p in g['params']):,} params "
                       f"at weight decay {g['weight_decay']:g}" for g in optimizer.param_groups)
    b, m, t = config.backbone, config.mae, config.train
    console.print(data.describe())
    console.print(f"MAE {b.name} {b.img_size} px, patch {model.patch_size} ({model.num_patches} patches, "
                  f"{kept_count(model.num_patches, m.mask_ratio)} visible), "
                  f"decoder {m.decoder_depth} x {m.decoder_dim}; trainable: encoder {encoder:,}, "
                  f"decoder {decoder:,}")
    console.print(f"AdamW betas {t.betas}, peak lr {t.learning_rate():.3g} (blr {t.blr:g} x {t.batch_size}/256"
                  f"{'' if t.lr is None else ', overridden by --lr'}), {t.epochs} epochs, warmup "
                  f"{t.warmup_epochs:g}; groups: {groups}; device {device}")
    return {"encoder": encoder, "decoder": decoder}
