"""Fine-tuning: one classifier run from its config to a finished run directory.

Driven by :func:`medpeft.runtime.run_epochs`: train under the warmup-cosine schedule for the
run's length (``epochs``; or ``steps`` optimiser steps; or epochs raised to take ``min_steps``),
score the validation split every ``val_every`` epochs and after the last, keep the best
weights (by validation macro AUROC) and stop early after ``patience`` validations without
improvement. A validation split on which no label has both classes (binary: one class;
multiclass: one class; multilabel: no finding with both positives and negatives) has no AUROC,
so the best weights are then those of the lowest validation loss, with a warning
(:func:`selection`; the loss comes from the same forward pass as the validation scores, so a
validation is one pass over the split either way); a label with one class among others that have two is left out of the macro
AUROC, with a warning too. At the end the best weights' validation scores choose each label's decision
threshold (binary and multilabel: the one that maximises validation F1), the test split is
scored at 0.5 and at those thresholds, and the run directory is completed
(docs/architecture.md, "Run directory").

Two ways a run can look trained without being so are warned about, on the console and in the
log: fewer than MIN_STEPS optimiser steps (47 labelled images at batch 64 are one step per
epoch), and the same decision for every test image.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

import torch
import torch.nn as nn
from rich.console import Console
from torch.utils.data import DataLoader

from ..console import make_console, print_warning
from ..data.base import DatasetInfo, DataSplits
from ..data.summary import describe
from ..methods import (Method, adapter_state_dict, count_parameters, describe_trainable, load_adapter_state,
                       save_adapter)
from ..runtime import (EpochEnd, EpochStats, Job, LoopResult, LoopSettings, Plan, RunConfig, RunDir, TrainConfig,
                       autocast_for, build_model, compute_metrics, eval_loader, evaluate, load_splits, make_loader,
                       one_class_warning, predict, resolve_device, resolve_precision,
                       resolve_run_config, run_epochs, subgroup_metrics, validation_thresholds)
from ..runtime.build import validation_note
from ..serialization import atomic_write
from ..runtime.distributed import init_from_env, rank_world
from ..runtime.distributed import wrap as wrap_ddp
from ..runtime.featurecache import FrozenSuffix, cache_features, plan_cache
from .mixing import mix_batch
from .optim import build_optimizer, loss_function

MIN_STEPS = 50  # fewer optimiser steps than this: warn that the run will barely train
PREDICTIONS = "predictions-test.npz"  # test scores and labels, for reports' CIs over seeds
FEATURE_CACHE_DIR = "feature-cache"  # memory-mapped frozen features too large for memory; removed at the end
MAY_CHANGE = ("epochs", "steps", "min_steps", "feature_cache")  # --resume may extend a run (it keeps the weights so far) or cache differently


class ClassifierJob(Job):
    """What one batch and one epoch of fine-tuning do; keeps the best validated epoch's weights.

    Validates after every ``val_every``-th epoch and after the last; ``patience`` counts
    validations (with ``val_every`` 1, epochs). Early stopping never ends a run before
    ``min_steps`` optimiser steps: that floor is the run's minimum length (issue 26)."""

    def __init__(self, model: nn.Module, method: Method, optimizer, criterion: nn.Module, val_loader: DataLoader,
                 info: DatasetInfo, device, autocast, patience: int | None, source: str, val_every: int = 1,
                 on_validation: Callable[[int, dict], None] | None = None, mixup: float = 0.0, cutmix: float = 0.0,
                 net: nn.Module | None = None, val_inputs: DataLoader | None = None, min_steps: int | None = None):
        self.model, self.method, self.optimizer, self.criterion = model, method, optimizer, criterion
        self.val_loader, self.info, self.device, self.autocast = val_loader, info, device, autocast
        # what a batch goes through, and what validation scores: the model on images, or the
        # trainable rest of it on cached frozen features (runtime/featurecache.py)
        self.net = net if net is not None else model
        self.val_inputs = val_inputs if val_inputs is not None else val_loader
        self.patience, self.source, self.val_every = patience, source, val_every
        self.min_steps = min_steps  # early stopping waits until the run has taken this many steps
        self.on_validation = on_validation
        self.mixup, self.cutmix = mixup, cutmix  # batch mixing of training batches (0: off)
        self.best: dict | None = None
        self.validations = 0  # validations so far
        self.select_by = "auroc"  # or "loss" when validation has no AUROC (selection())

    def loss(self, batch):
        images, targets = batch
        images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        if self.mixup or self.cutmix:
            images, targets = mix_batch(images, targets, task=self.info.task, num_outputs=self.info.num_outputs,
                                        mixup=self.mixup, cutmix=self.cutmix)
        logits = self.net(images)
        return self.criterion(logits.float(), targets), len(images)

    def validates(self, stats: EpochStats) -> bool:
        return (stats.epoch + 1) % self.val_every == 0 or stats.epoch + 1 == stats.epochs

    def end_epoch(self, stats: EpochStats) -> EpochEnd:
        if not self.validates(stats):
            return EpochEnd({"epoch": stats.epoch, "train_loss": stats.loss, "lr": stats.lr, "steps": stats.steps})
        val = self.validate()
        self.validations += 1
        if self.select_by == "loss":
            improved = self.best is None or val["loss"] < self.best["loss"]
        else:
            improved = self.best is None or val["auroc"] > self.best["auroc"]
        if improved:
            self.best = {"auroc": val["auroc"], "epoch": stats.epoch, "validation": self.validations,
                         "state": self.model_state(), **({"loss": val["loss"]} if "loss" in val else {})}
        record = {"epoch": stats.epoch, "train_loss": stats.loss, "val_auroc": val["auroc"],
                  "val_acc": val["acc"], "lr": stats.lr, "steps": stats.steps,
                  **({"val_loss": val["loss"]} if "loss" in val else {})}
        if self.on_validation is not None:  # e.g. a study's pruner, which may stop the run
            self.on_validation(stats.epoch, val)
        stop = ""
        if (self.patience is not None and self.validations - self.best["validation"] >= self.patience
                and stats.steps >= (self.min_steps or 0)):
            stop = (f"early stopping: no val improvement in {self.patience} validation(s) "
                    f"({stats.epoch - self.best['epoch']} epochs)")
        shown = f"val loss {val['loss']:.4f}  " if "loss" in val else ""
        return EpochEnd(record, text=f"{shown}val auroc {val['auroc']:.4f}  acc {val['acc']:.4f}",
                        note="*best" if improved else "", stop=stop)

    def validate(self) -> dict:
        """The validation metrics, from one forward pass over the validation split; when the best
        epoch is chosen by loss (:func:`selection`), also ``loss``: the mean training loss (no
        mixing) of that same pass's logits, in eval mode."""
        if self.select_by != "loss":
            return evaluate(self.net, self.val_inputs, self.info, self.device, autocast=self.autocast)
        total = 0.0

        def add_loss(logits: torch.Tensor, targets: torch.Tensor) -> None:
            nonlocal total
            total += float(self.criterion(logits, targets.to(self.device))) * len(targets)

        scores, labels = predict(self.net, self.val_inputs, self.info.task, self.device, self.autocast,
                                 on_logits=add_loss)
        val = compute_metrics(scores, labels, self.info.task, self.info.column_names)
        val["loss"] = total / max(len(labels), 1)
        return val

    def model_state(self) -> dict:
        return adapter_state_dict(self.model, self.method)

    def load_model_state(self, state: dict) -> None:
        load_adapter_state(self.model, state, source=self.source)

    def extra_state(self) -> dict:
        return {"best": self.best, "validations": self.validations}

    def load_extra_state(self, state: dict) -> None:
        self.best, self.validations = state["best"], state["validations"]


def selection(labels: np.ndarray, info: DatasetInfo) -> tuple[str, str]:
    """How the best epoch is chosen on validation ``labels``: ("auroc" | "loss", a warning or "").

    "loss" when no label has both classes there (no AUROC exists); the warning also names the
    labels left out of the macro AUROC when only some have one class."""
    if info.task == "multiclass":
        present = set(np.unique(labels[:, 0]).tolist())
        one_class = [name for i, name in enumerate(info.label_names) if i not in present]
        defined = len(present) >= 2
        what = f"has only the class(es) {[info.label_names[i] for i in sorted(present)]}"
    else:
        positives, n = labels.sum(axis=0), len(labels)
        one_class = [name for name, p in zip(info.column_names, positives) if p in (0, n)]
        defined = len(one_class) < len(info.column_names)
        what = ("has one class for " + ", ".join(
            f"{name} ({'no positives' if p == 0 else 'no negatives'})"
            for name, p in zip(info.column_names, positives) if p in (0, n)))
    if not one_class:
        return "auroc", ""
    if not defined:
        return "loss", (f"the validation split ({len(labels)} images) {what}, so it has no AUROC: the best "
                        "epoch is chosen by the lowest validation loss instead; give the validation split "
                        "images of every class")
    return "auroc", (f"the validation split ({len(labels)} images) {what}: "
                     f"{'those classes are' if info.task == 'multiclass' else 'those findings are'} left out "
                     "of the validation AUROC that chooses the best epoch")


def finetune(config: RunConfig, out_dir, *, resume: bool = False, console: Console | None = None,
             progress: bool = True, on_validation: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``config`` into the run directory ``out_dir`` and return its metrics.

    ``on_validation(epoch, val_metrics)`` is called after every validation; an exception it
    raises (a study's pruner) stops the run, leaving its last checkpoint."""
    init_from_env(resolve_device(config.train.device))  # under torchrun: join its process group
    rank, world = rank_world()
    if rank > 0:  # data parallel: rank 0 writes the run directory; the others train beside it
        return _follow(config, Path(out_dir), resume=resume)
    console = console or make_console()
    config, warnings = resolve_run_config(config)  # every check that needs no disk or data
    for warning in warnings:
        print_warning(console, warning)
    run = RunDir(out_dir)
    with run.lock():
        state = run.start(config.to_dict(), resume=resume, may_change=MAY_CHANGE, read=_read_saved)
        for warning in warnings:
            run.log(f"warning: {warning}")
        return _train(config, run, state, console, progress, on_validation)


def _read_saved(values: dict) -> dict:
    """A saved run config as this medpeft writes it (for resuming runs of an earlier version)."""
    return resolve_run_config(RunConfig.from_dict(values))[0].to_dict()


def _follow(config: RunConfig, out_dir: Path, *, resume: bool) -> dict:
    """A data-parallel rank other than 0: the same run in a scratch directory of its own,
    started from rank 0's checkpoint when resuming; its files are removed at the end."""
    config, _ = resolve_run_config(config)
    with tempfile.TemporaryDirectory(prefix=f"medpeft-rank{rank_world()[0]}-") as scratch:
        run = RunDir(scratch)
        main = RunDir(out_dir)
        if resume and main.checkpoint_path.is_file():
            shutil.copy(main.checkpoint_path, run.checkpoint_path)
            run.save_config(main.load_config())
        with run.lock():
            state = run.start(config.to_dict(), resume=resume, may_change=MAY_CHANGE, read=_read_saved)
            return _train(config, run, state, Console(quiet=True), False)


def _train(config: RunConfig, run: RunDir, state: dict | None, console: Console, progress: bool,
           on_validation=None) -> dict:
    train = config.train
    device = resolve_device(train.device)
    precision, why = resolve_precision(device, train.precision)
    autocast = autocast_for(device, precision)
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
    settings = LoopSettings(epochs=train.epochs, batch_size=train.batch_size, seed=train.seed, lr=lr,
                            min_lr=train.min_lr, warmup_epochs=train.warmup_epochs, clip_grad=train.clip_grad,
                            num_workers=train.num_workers, pin_memory=device.type == "cuda",
                            steps=train.steps, min_steps=train.min_steps, schedule=train.schedule,
                            milestones=train.milestones, gamma=train.gamma)
    plan = Plan.of(settings, len(splits.train))
    val_every = train.validation_interval(plan.epochs)
    length = f"{plan.describe()}, validating every {val_every} epoch{'s' * (val_every != 1)}"
    console.print(f"optimizer {train.optimizer}, peak lr {lr:.3g}, batch {train.batch_size}, {length}, "
                  f"layer decay {train.layer_decay:g}, device {device}, precision {precision} ({why})")
    optimizer = build_optimizer(model, train, lr)
    val_loader = eval_loader(splits.val, train)  # transformed once, scored at every validation
    cache = plan_cache(model, deterministic_inputs=_varying_inputs(config), mode=train.feature_cache)
    train_set, net, val_inputs = splits.train, None, None
    if cache.active:
        net = FrozenSuffix(model, cache.start, cache.pooled)
        console.print(f"feature cache: {cache.reason}; computing them once for the training and validation images")
        spill = run.path / FEATURE_CACHE_DIR
        train_set = cache_features(net, splits.train, batch_size=train.eval_batch_size, device=device,
                                   autocast=autocast, spill_dir=spill, name="train")
        val_inputs = make_loader(cache_features(net, splits.val, batch_size=train.eval_batch_size, device=device,
                                                autocast=autocast, spill_dir=spill, name="val"),
                                 train, shuffle=False)
        settings.num_workers = 0  # in-memory tensors: worker processes would only copy them
    if rank_world()[1] > 1:  # data parallel: gradients averaged over the processes
        net = wrap_ddp(net if net is not None else model, device)
        console.print(f"data parallel: {rank_world()[1]} processes, {train.batch_size} images a step in all")
    job = ClassifierJob(model, method, optimizer, loss_function(info.task), val_loader, info, device, autocast,
                        train.patience, source=str(run.checkpoint_path), val_every=val_every,
                        on_validation=on_validation, mixup=train.mixup, cutmix=train.cutmix, net=net,
                        val_inputs=val_inputs, min_steps=train.min_steps)
    job.select_by, fallback = selection(splits.val.labels, info)
    if fallback:
        print_warning(console, fallback)
        run.log(f"warning: {fallback}")
    if state is None:
        run.log(f"start: {config.backbone.name} + {method.name}, {describe_trainable(model)}, "
                f"{len(splits.train)} training images ({splits.subset_note}); {length}; "
                f"precision {precision} ({why}); feature cache: {cache.reason}")
        if validation_note(splits):  # val_fraction: the validation subset's size
            run.log(validation_note(splits))
    for warning in plan_warnings(plan, len(splits.train), train):
        print_warning(console, warning)
        run.log(f"warning: {warning}")
    try:
        result = run_epochs(job, train_set, settings, run, config=config.to_dict(), may_change=MAY_CHANGE,
                            state=state, autocast=autocast, console=console, progress=progress)
    finally:
        shutil.rmtree(run.path / FEATURE_CACHE_DIR, ignore_errors=True)
    load_adapter_state(model, job.best["state"], source="best epoch")
    return _finish(run, config, job, splits, result, plan, console)


def _varying_inputs(config: RunConfig) -> str | None:
    """Why the training images differ between epochs (None: they do not)."""
    varying = [f"augment={config.data.augment}"] if config.data.augment != "none" else []
    varying += [f"{name}={value:g}" for name, value in (("mixup", config.train.mixup), ("cutmix", config.train.cutmix))
                if value]
    return ", ".join(varying) or None


def plan_warnings(plan: Plan, train_size: int, train: TrainConfig) -> list[str]:
    """What is wrong with a run's length before it starts: too few steps, a warmup as long as the run."""
    warnings = []
    if plan.total_steps < MIN_STEPS:
        warnings.append(f"this run takes only {plan.total_steps} optimiser steps ({train_size} training images, "
                        f"batch {train.batch_size}, {plan.epochs} epochs), too few to train it; lengthen it "
                        f"with --min-steps (e.g. --min-steps 500: epochs are raised to take at least that "
                        f"many steps) or --steps N (exactly N steps)")
    if plan.warmup_steps >= plan.total_steps:
        warnings.append(f"the warmup ({train.warmup_epochs:g} epochs = {plan.warmup_steps:g} steps) is as long "
                        f"as the run ({plan.total_steps} steps): the learning rate never reaches its peak nor "
                        f"decays; lower --warmup-epochs or lengthen the run")
    return warnings


def _finish(run: RunDir, config: RunConfig, job: ClassifierJob, splits: DataSplits, result: LoopResult, plan: Plan,
            console: Console) -> dict:
    train, model, info = config.train, job.model, splits.info
    val, thresholds = validation_thresholds(model, job.val_loader, info, job.device, autocast=job.autocast)
    scores, labels = predict(model, make_loader(splits.test, train, shuffle=False), info.task, job.device,
                             autocast=job.autocast)
    test = compute_metrics(scores, labels, info.task, info.column_names, n_bootstrap=train.n_bootstrap,
                           seed=train.seed, thresholds=thresholds)
    groups = splits.test.subgroups
    if groups is not None:  # per-subgroup metrics and the largest gap (csv: subgroup=<column>)
        test["subgroups"] = subgroup_metrics(scores, labels, groups, info.task, info.column_names,
                                             column=info.subgroup, thresholds=thresholds,
                                             n_bootstrap=min(train.n_bootstrap, 200), seed=train.seed)
    save_predictions(run.path / PREDICTIONS, scores, labels, info.task, groups)
    trainable, total = count_parameters(model)
    metrics = {"val": val, "test": test, "best_epoch": job.best["epoch"] + 1, "epochs_run": len(result.history),
               "steps": result.steps, "planned_steps": plan.total_steps, "planned_epochs": plan.epochs,
               "steps_per_epoch": plan.steps_per_epoch, "val_every": job.val_every,
               "trainable_params": trainable, "total_params": total,
               "wall_time_s": round(result.elapsed, 2), "train_img_per_s": round(result.img_per_s, 1),
               "train_size": len(splits.train), "history": result.history}
    save_adapter(model, job.method, run.path, extra={
        "base_model_name_or_path": config.backbone.name, "backbone": config.to_dict()["backbone"],
        "num_outputs": info.num_outputs, "task": info.task, "labels": list(info.column_names),
        "label_names": list(info.label_names),  # a binary run's two class names (labels has the positive)
        **({"thresholds": thresholds} if thresholds is not None else {})})
    run.save_metrics(metrics)
    if not train.keep_checkpoint:
        run.remove_checkpoint()
    line = final_line(test, job, result)
    console.print(line)
    run.log(line)
    warning = one_class_warning(test, info.task)
    if warning:
        print_warning(console, warning)
        run.log(f"warning: {warning}")
    return metrics


def save_predictions(path: Path, scores: np.ndarray, labels: np.ndarray, task: str,
                     groups: np.ndarray | None = None) -> None:
    """The test split's scores (N, K), labels (N, L) and subgroups (N,) if any, atomically
    (reports bootstrap CIs of the mean over seeds from them)."""
    extra = {"subgroups": np.asarray(groups).astype(str)} if groups is not None else {}
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, scores=scores.astype(np.float32), labels=labels,
                                                       task=np.array(task), **extra), suffix=".tmp.npz")


def final_line(test: dict, job: ClassifierJob, result: LoopResult) -> str:
    ci = test.get("auroc_ci95")
    ci_text = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    at_val = (f"  at val threshold acc {test['acc_at_val_threshold']:.4f}  f1 {test['f1_macro_at_val_threshold']:.4f}"
              if "thresholds" in test else "")
    flag = "  ONE CLASS" if test["one_class"] or test.get("one_class_at_val_threshold") else ""
    return (f"test auroc {test['auroc']:.4f}{ci_text}  acc {test['acc']:.4f}  f1 {test['f1_macro']:.4f}{at_val}"
            f"  (best epoch {job.best['epoch'] + 1}, {result.steps} steps, {result.elapsed:.0f} s){flag}")
