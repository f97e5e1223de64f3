"""The fine-tuning loop, written once for every method, backbone and dataset.

Per epoch: train with the warmup-cosine schedule, score the validation split, keep a deep
copy of the best weights (early stopping on validation macro AUROC), and write
``checkpoint-last.pt``. At the end, the best weights are scored on the test split and the run
directory is completed (DESIGN.md). Every epoch starts by reseeding from (seed, epoch), so a
run resumed from its last checkpoint continues exactly as if it had never stopped.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch
import torch.nn as nn
from rich.console import Console
from timm.optim import create_optimizer_v2

from ..data.summary import describe
from ..eval import evaluate
from ..methods import (adapter_state_dict, count_parameters, describe_trainable, load_adapter_state,
                       save_adapter)
from ..runs import RunDir
from .build import autocast_for, build_model, load_splits, make_loader, resolve_device, seed_everything
from .config import RunConfig, TrainConfig
from .progress import EpochProgress
from .schedule import lr_at, set_lr
from .step import optimizer_step


def loss_function(task: str) -> nn.Module:
    return nn.CrossEntropyLoss() if task == "multiclass" else nn.BCEWithLogitsLoss()


def build_optimizer(model: nn.Module, train: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """timm's optimizer factory: no decay on biases/norms/tokens, layer-wise lr decay for ViTs."""
    layer_decay = train.layer_decay if train.layer_decay < 1.0 and hasattr(model, "blocks") else None
    extra = {"momentum": train.momentum} if train.optimizer == "sgd" else {}
    return create_optimizer_v2(model, opt=train.optimizer, lr=lr,
                               weight_decay=train.weight_decay, layer_decay=layer_decay, **extra)


def finetune(config: RunConfig, out_dir, *, resume: bool = False, console: Console | None = None,
             progress: bool = True) -> dict:
    """Train ``config`` into the run directory ``out_dir`` and return its metrics."""
    console = console or Console()
    run = RunDir(out_dir)
    state = run.start(config.to_dict(), resume=resume)
    train_cfg = config.train
    device = resolve_device(train_cfg.device)
    autocast = autocast_for(device, train_cfg.precision)

    splits = load_splits(config.data, config.backbone.img_size, config.backbone.mean, config.backbone.std)
    info = splits.info
    model, method, report = build_model(config, info.num_outputs)
    model.to(device)
    console.print(describe(splits))
    if report is not None:
        console.print(report.summary())
        run.log(report.summary().replace("\n", " |"))
    console.print(f"{config.backbone.name} + {method.name}: {describe_trainable(model)}")

    lr = train_cfg.learning_rate(method.default_blr)
    console.print(f"optimizer {train_cfg.optimizer}, peak lr {lr:.3g}, batch {train_cfg.batch_size}, "
                  f"{train_cfg.epochs} epochs, layer decay {train_cfg.layer_decay:g}, device {device}")
    optimizer = build_optimizer(model, train_cfg, lr)
    criterion = loss_function(info.task)
    val_loader = make_loader(splits.val, train_cfg, shuffle=False)
    steps_per_epoch = math.ceil(len(splits.train) / train_cfg.batch_size)
    schedule = dict(lr=lr, min_lr=train_cfg.min_lr,
                    warmup_steps=train_cfg.warmup_epochs * steps_per_epoch,
                    total_steps=train_cfg.epochs * steps_per_epoch)

    history, best, start_epoch, elapsed, images_seen, train_seconds = [], None, 0, 0.0, 0, 0.0
    if state is not None:
        load_adapter_state(model, state["model"], source=str(run.checkpoint_path))
        optimizer.load_state_dict(state["optimizer"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"] + 1
        elapsed, images_seen, train_seconds = state["elapsed"], state["images_seen"], state["train_seconds"]
        console.print(f"resuming {run.path} after epoch {start_epoch}")
        run.log(f"resumed after epoch {start_epoch}")
    else:
        run.log(f"start: {config.backbone.name} + {method.name}, {describe_trainable(model)}, "
                f"{len(splits.train)} training images ({splits.subset_note})")

    started = time.perf_counter()
    for epoch in range(start_epoch, train_cfg.epochs):
        seed_everything(train_cfg.seed * 100_003 + epoch)
        loader = make_loader(splits.train, train_cfg, shuffle=True, seed=train_cfg.seed * 100_003 + epoch)
        epoch_start = time.perf_counter()
        loss, seen = _train_one_epoch(model, loader, optimizer, criterion, epoch, steps_per_epoch,
                                      schedule, train_cfg, device, autocast, run, progress, console)
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        images_seen += seen
        val = evaluate(model, val_loader, info, device, autocast=autocast)
        improved = best is None or val["auroc"] > best["auroc"]
        if improved:
            best = {"auroc": val["auroc"], "epoch": epoch, "state": adapter_state_dict(model, method)}
        history.append({"epoch": epoch, "train_loss": loss, "val_auroc": val["auroc"],
                        "val_acc": val["acc"], "lr": optimizer.param_groups[0]["lr"]})
        line = (f"epoch {epoch + 1}/{train_cfg.epochs}  loss {loss:.4f}  val auroc {val['auroc']:.4f}"
                f"  acc {val['acc']:.4f}  {seen / epoch_seconds:.0f} img/s{'  *best' if improved else ''}")
        console.print(line)
        run.log(line)
        now = time.perf_counter()
        run.save_checkpoint({"epoch": epoch, "model": adapter_state_dict(model, method),
                             "optimizer": optimizer.state_dict(), "history": history, "best": best,
                             "elapsed": elapsed + now - started, "images_seen": images_seen,
                             "train_seconds": train_seconds})
        if _should_stop(history, best, train_cfg.patience):
            console.print(f"early stopping: no val improvement for {train_cfg.patience} epochs")
            run.log("early stopping")
            break
    elapsed += time.perf_counter() - started

    load_adapter_state(model, best["state"], source="best epoch")
    return _finish(run, config, model, method, splits, best, history, elapsed,
                   images_seen / max(train_seconds, 1e-9), device, autocast, console)


def _train_one_epoch(model, loader, optimizer, criterion, epoch, steps_per_epoch, schedule, cfg,
                     device, autocast, run, progress, console) -> tuple[float, int]:
    model.train()
    total_loss, seen = 0.0, 0
    with EpochProgress(len(loader), f"epoch {epoch + 1}/{cfg.epochs}", console, enabled=progress) as bar:
        for step, (images, targets) in enumerate(loader):
            set_lr(optimizer, lr_at(epoch * steps_per_epoch + step, **schedule))
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast or contextlib.nullcontext():
                logits = model(images)
            loss = criterion(logits.float(), targets)
            optimizer_step(loss, model, optimizer, cfg.clip_grad, epoch=epoch, step=step, run=run)
            total_loss += loss.item() * len(images)
            seen += len(images)
            bar.advance(loss=total_loss / seen, images=len(images))
    return total_loss / max(seen, 1), seen


def _should_stop(history: list[dict], best: dict, patience: int | None) -> bool:
    return patience is not None and history[-1]["epoch"] - best["epoch"] >= patience


def _finish(run, config, model, method, splits, best, history, elapsed, img_per_s, device, autocast,
            console) -> dict:
    train_cfg = config.train
    test_loader = make_loader(splits.test, train_cfg, shuffle=False)
    val_loader = make_loader(splits.val, train_cfg, shuffle=False)
    test = evaluate(model, test_loader, splits.info, device, n_bootstrap=train_cfg.n_bootstrap,
                    seed=train_cfg.seed, autocast=autocast)
    val = evaluate(model, val_loader, splits.info, device, autocast=autocast)
    trainable, total = count_parameters(model)
    metrics = {"val": val, "test": test, "best_epoch": best["epoch"] + 1, "epochs_run": len(history),
               "trainable_params": trainable, "total_params": total, "wall_time_s": round(elapsed, 2),
               "train_img_per_s": round(img_per_s, 1), "train_size": len(splits.train),
               "history": history}
    info = splits.info
    save_adapter(model, method, run.path, extra={
        "base_model_name_or_path": config.backbone.name, "backbone": config.to_dict()["backbone"],
        "num_outputs": info.num_outputs, "task": info.task, "labels": list(info.column_names)})
    run.save_metrics(metrics)
    if not train_cfg.keep_checkpoint:
        run.remove_checkpoint()
    ci = test.get("auroc_ci95")
    ci_text = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    line = (f"test auroc {test['auroc']:.4f}{ci_text}  acc {test['acc']:.4f}  f1 {test['f1_macro']:.4f}"
            f"  (best epoch {best['epoch'] + 1}, {elapsed:.0f} s)")
    console.print(line)
    run.log(line)
    return metrics
