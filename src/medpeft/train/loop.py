"""Fine-tuning: one classifier run from its config to a finished run directory.

Every epoch (driven by :func:`medpeft.runtime.run_epochs`): train under the warmup-cosine
schedule, score the validation split, keep the best weights (by validation macro AUROC) and
stop early after ``patience`` epochs without improvement. At the end, the best weights are
scored on the test split and the run directory is completed (DESIGN.md).
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn
from rich.console import Console
from torch.utils.data import DataLoader

from ..console import make_console, print_warning
from ..data.base import DatasetInfo, DataSplits
from ..data.summary import describe
from ..methods import (Method, adapter_state_dict, count_parameters, describe_trainable, load_adapter_state,
                       save_adapter)
from ..runtime import (EpochEnd, EpochStats, Job, LoopResult, LoopSettings, RunConfig, RunDir, autocast_for,
                       build_model, evaluate, load_splits, make_loader, resolve_device, resolve_run_config,
                       run_epochs)
from .optim import build_optimizer, loss_function


class ClassifierJob(Job):
    """What one batch and one epoch of fine-tuning do; keeps the best epoch's weights."""

    def __init__(self, model: nn.Module, method: Method, optimizer, criterion: nn.Module, val_loader: DataLoader,
                 info: DatasetInfo, device, autocast, patience: int | None, source: str,
                 on_validation: Callable[[int, dict], None] | None = None):
        self.model, self.method, self.optimizer, self.criterion = model, method, optimizer, criterion
        self.val_loader, self.info, self.device, self.autocast = val_loader, info, device, autocast
        self.patience, self.source, self.on_validation = patience, source, on_validation
        self.best: dict | None = None

    def loss(self, batch):
        images, targets = batch
        images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        logits = self.model(images)
        return self.criterion(logits.float(), targets), len(images)

    def end_epoch(self, stats: EpochStats) -> EpochEnd:
        val = evaluate(self.model, self.val_loader, self.info, self.device, autocast=self.autocast)
        improved = self.best is None or val["auroc"] > self.best["auroc"]
        if improved:
            self.best = {"auroc": val["auroc"], "epoch": stats.epoch, "state": self.model_state()}
        record = {"epoch": stats.epoch, "train_loss": stats.loss, "val_auroc": val["auroc"],
                  "val_acc": val["acc"], "lr": stats.lr}
        if self.on_validation is not None:  # e.g. a study's pruner, which may stop the run
            self.on_validation(stats.epoch, val)
        stop = ""
        if self.patience is not None and stats.epoch - self.best["epoch"] >= self.patience:
            stop = f"early stopping: no val improvement for {self.patience} epochs"
        return EpochEnd(record, text=f"val auroc {val['auroc']:.4f}  acc {val['acc']:.4f}",
                        note="*best" if improved else "", stop=stop)

    def model_state(self) -> dict:
        return adapter_state_dict(self.model, self.method)

    def load_model_state(self, state: dict) -> None:
        load_adapter_state(self.model, state, source=self.source)

    def extra_state(self) -> dict:
        return {"best": self.best}

    def load_extra_state(self, state: dict) -> None:
        self.best = state["best"]


def finetune(config: RunConfig, out_dir, *, resume: bool = False, console: Console | None = None,
             progress: bool = True, on_validation: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``config`` into the run directory ``out_dir`` and return its metrics.

    ``on_validation(epoch, val_metrics)`` is called after every validation; an exception it
    raises (a study's pruner) stops the run, leaving its last checkpoint."""
    console = console or make_console()
    config, warnings = resolve_run_config(config)  # every check that needs no disk or data
    for warning in warnings:
        print_warning(console, warning)
    run = RunDir(out_dir)
    with run.lock():
        state = run.start(config.to_dict(), resume=resume)
        for warning in warnings:
            run.log(f"warning: {warning}")
        return _train(config, run, state, console, progress, on_validation)


def _train(config: RunConfig, run: RunDir, state: dict | None, console: Console, progress: bool,
           on_validation=None) -> dict:
    train = config.train
    device = resolve_device(train.device)
    autocast = autocast_for(device, train.precision)
    splits = load_splits(config.data, config.backbone)
    info = splits.info
    model, method, report = build_model(config, info.num_outputs)
    model.to(device)
    console.print(describe(splits))
    if report is not None:
        console.print(report.summary())
        run.log(report.summary().replace("\n", " |"))
    console.print(f"{config.backbone.name} + {method.name}: {describe_trainable(model)}")
    lr = config.learning_rate
    console.print(f"optimizer {train.optimizer}, peak lr {lr:.3g}, batch {train.batch_size}, "
                  f"{train.epochs} epochs, layer decay {train.layer_decay:g}, device {device}")
    optimizer = build_optimizer(model, train, lr)
    job = ClassifierJob(model, method, optimizer, loss_function(info.task),
                        make_loader(splits.val, train, shuffle=False), info, device, autocast,
                        train.patience, source=str(run.checkpoint_path), on_validation=on_validation)
    if state is None:
        run.log(f"start: {config.backbone.name} + {method.name}, {describe_trainable(model)}, "
                f"{len(splits.train)} training images ({splits.subset_note})")
    settings = LoopSettings(epochs=train.epochs, batch_size=train.batch_size, seed=train.seed, lr=lr,
                            min_lr=train.min_lr, warmup_epochs=train.warmup_epochs, clip_grad=train.clip_grad,
                            num_workers=train.num_workers, pin_memory=device.type == "cuda")
    result = run_epochs(job, splits.train, settings, run, config=config.to_dict(), state=state,
                        autocast=autocast, console=console, progress=progress)
    load_adapter_state(model, job.best["state"], source="best epoch")
    return _finish(run, config, job, splits, result, console)


def _finish(run: RunDir, config: RunConfig, job: ClassifierJob, splits: DataSplits, result: LoopResult,
            console: Console) -> dict:
    train, model, info = config.train, job.model, splits.info
    test = evaluate(model, make_loader(splits.test, train, shuffle=False), info, job.device,
                    n_bootstrap=train.n_bootstrap, seed=train.seed, autocast=job.autocast)
    val = evaluate(model, job.val_loader, info, job.device, autocast=job.autocast)
    trainable, total = count_parameters(model)
    metrics = {"val": val, "test": test, "best_epoch": job.best["epoch"] + 1, "epochs_run": len(result.history),
               "steps": result.steps, "trainable_params": trainable, "total_params": total,
               "wall_time_s": round(result.elapsed, 2), "train_img_per_s": round(result.img_per_s, 1),
               "train_size": len(splits.train), "history": result.history}
    save_adapter(model, job.method, run.path, extra={
        "base_model_name_or_path": config.backbone.name, "backbone": config.to_dict()["backbone"],
        "num_outputs": info.num_outputs, "task": info.task, "labels": list(info.column_names)})
    run.save_metrics(metrics)
    if not train.keep_checkpoint:
        run.remove_checkpoint()
    ci = test.get("auroc_ci95")
    ci_text = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    line = (f"test auroc {test['auroc']:.4f}{ci_text}  acc {test['acc']:.4f}  f1 {test['f1_macro']:.4f}"
            f"  (best epoch {job.best['epoch'] + 1}, {result.steps} steps, {result.elapsed:.0f} s)")
    console.print(line)
    run.log(line)
    return metrics
