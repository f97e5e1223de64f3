"""The one epoch loop, driven by fine-tuning and by MAE pretraining alike.

A training job says what one batch does (:meth:`Job.loss`) and what the end of an epoch reports
(:meth:`Job.end_epoch`: validation, best weights, early stopping); :func:`run_epochs` does the
rest, written once: restore from the last checkpoint on resume, reseed every epoch from
(seed, epoch), set the warmup-cosine learning rate every iteration, take the optimiser step
(refusing a non-finite loss), show progress, log one line per epoch, and write
``checkpoint-last.pt`` after the first epoch, the last one, and otherwise at most every
``$MEDPEFT_CHECKPOINT_SECONDS`` (10 s; 0 = every epoch): with one-second epochs, saving the
optimiser state every epoch cost 9% of a small run. A run resumed after epoch k therefore
continues exactly as if it had never stopped (a kill loses at most those seconds of work). :func:`heldout_loss` is what a job's ``end_epoch`` reports when the loss itself is
the score (pretraining, diffusion): the same batches and random draws every epoch.

The length of a run (:class:`Plan`) is a number of epochs, or a number of optimiser steps
(``steps``: the last epoch may be partial), or epochs raised to take at least ``min_steps``
steps: with 47 labelled images and batch 64 an epoch is one step, so "10 epochs" would be ten
updates, and a 1% subset is given its budget in steps instead.

Written here rather than taken from a trainer library (Lightning, HF Trainer, Ignite) because
the run-directory, resume and seeding contracts of docs/architecture.md ("Run directory") are
the point of it and each of those libraries brings its own; the loop is ~100 lines.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
from rich.console import Console
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from ..console import print_warning
from .device import busy_machine_warning
from .distributed import ShardedBatches, rank_world, sum_over_ranks
from .progress import EpochProgress
from .rundir import RunDir
from .schedule import lr_at, set_lr
from .seeding import epoch_seed, seed_everything
from .step import optimizer_step

CHECKPOINT_SECONDS = 10.0  # default time between checkpoints (checkpoint_interval)


@dataclass
class LoopSettings:
    epochs: int  # planned number of passes over the training set
    batch_size: int
    seed: int
    lr: float  # peak learning rate (each group's lr_scale multiplies it)
    min_lr: float  # floor of the cosine
    warmup_epochs: float
    clip_grad: float | None = None
    num_workers: int = 0
    pin_memory: bool = False
    steps: int | None = None  # run length in optimiser steps; overrides epochs (the last epoch may be partial)
    min_steps: int | None = None  # raise epochs (whole ones) until the run takes at least this many steps
    schedule: str = "cosine"  # cosine | step (see runtime/schedule.py)
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of the run
    gamma: float = 0.1  # step schedule: lr factor at each milestone


@dataclass
class Plan:
    """How long a run is, in optimiser steps, given its training-set size."""

    steps_per_epoch: int
    total_steps: int
    epochs: int  # epochs needed to take total_steps (the last one may be partial)
    warmup_steps: float

    @classmethod
    def of(cls, settings: LoopSettings, train_size: int) -> "Plan":
        per_epoch = max(1, math.ceil(train_size / settings.batch_size))
        if settings.steps is not None:
            total = settings.steps
        else:
            epochs = settings.epochs
            if settings.min_steps is not None:
                epochs = max(epochs, math.ceil(settings.min_steps / per_epoch))
            total = epochs * per_epoch
        return cls(per_epoch, total, math.ceil(total / per_epoch), settings.warmup_epochs * per_epoch)

    def describe(self) -> str:
        """E.g. ``500 optimiser steps (500 epochs of 1 step)``."""
        last = self.total_steps - (self.epochs - 1) * self.steps_per_epoch
        partial = f", the last one {last}" if last != self.steps_per_epoch else ""
        return (f"{self.total_steps} optimiser steps ({self.epochs} epoch{'s' * (self.epochs != 1)} of "
                f"{self.steps_per_epoch} step{'s' * (self.steps_per_epoch != 1)}{partial})")


@dataclass
class EpochStats:
    """What the loop measured in one epoch, handed to :meth:`Job.end_epoch`."""

    epoch: int  # 0-based
    epochs: int  # planned epochs
    loss: float  # mean training loss over the epoch's images
    images: int
    seconds: float
    lr: float  # the first group's learning rate after the epoch's last step
    steps: int  # optimiser steps taken so far in the whole run
    elapsed: float  # wall time of the run so far (s)
    img_per_s: float  # training throughput of the run so far


@dataclass
class EpochEnd:
    """What a job reports at the end of an epoch."""

    record: dict  # one entry of the run's history
    text: str = ""  # shown in the epoch line (e.g. validation metrics)
    note: str = ""  # shown after it (e.g. "*best")
    stop: str = ""  # non-empty: stop early, for this reason


@dataclass
class LoopResult:
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0  # wall time of the whole run, across resumes (s)
    images_seen: int = 0
    train_seconds: float = 0.0
    steps: int = 0
    stopped_early: str = ""

    @property
    def img_per_s(self) -> float:
        return self.images_seen / max(self.train_seconds, 1e-9)


class Job(ABC):
    """One kind of training, as the loop sees it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device

    @abstractmethod
    def loss(self, batch) -> tuple[torch.Tensor, int]:
        """Forward one batch (under the loop's autocast): (scalar loss, number of images)."""

    @abstractmethod
    def end_epoch(self, stats: EpochStats) -> EpochEnd:
        """Validate, keep what is worth keeping, and say whether to stop."""

    def after_record(self, stats: EpochStats, history: list[dict]) -> None:
        """Called once the epoch's record is in ``history``, before the checkpoint is written."""

    def model_state(self) -> dict:
        """What of the model a checkpoint holds (default: all of it)."""
        return self.model.state_dict()

    def load_model_state(self, state: dict) -> None:
        self.model.load_state_dict(state)

    def extra_state(self) -> dict:
        """Job state a resume needs besides model and optimiser (e.g. the best epoch's weights)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` saved."""


def run_epochs(job: Job, dataset: Dataset, settings: LoopSettings, run: RunDir, *, config: dict,
               may_change: tuple[str, ...] = ("epochs",), state: dict | None, autocast=None,
               console: Console, progress: bool = True) -> LoopResult:
    """Train ``job`` on ``dataset`` into ``run`` (resuming from ``state`` if given)."""
    plan = Plan.of(settings, len(dataset))
    result, start_epoch = LoopResult(), 0
    if state is not None:
        job.load_model_state(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
        job.load_extra_state(state)
        start_epoch = state["epoch"] + 1
        result = LoopResult(state["history"], state["elapsed"], state["images_seen"], state["train_seconds"],
                            state.get("steps", start_epoch * plan.steps_per_epoch))
        console.print(f"resuming {run.path} after epoch {start_epoch}")
        run.log(f"resumed after epoch {start_epoch}")
    busy = busy_machine_warning(job.device)
    if busy:
        print_warning(console, busy)
        run.log(f"warning: {busy}")
    started = time.perf_counter()
    prior = result.elapsed
    schedule = dict(lr=settings.lr, min_lr=settings.min_lr, warmup_steps=plan.warmup_steps,
                    total_steps=plan.total_steps, kind=settings.schedule, milestones=settings.milestones,
                    gamma=settings.gamma)
    last_save = -math.inf  # the first epoch always writes a checkpoint
    for epoch in range(start_epoch, plan.epochs):
        seed = epoch_seed(settings.seed, epoch)
        seed_everything(seed)
        loader = epoch_loader(dataset, settings, seed)
        steps = min(plan.steps_per_epoch, plan.total_steps - epoch * plan.steps_per_epoch)
        epoch_start = time.perf_counter()
        loss, images = _train_epoch(job, loader, steps, epoch, plan, schedule, settings, run, autocast,
                                    console, progress)
        loss_sum, images = sum_over_ranks(loss * images, images)  # data parallel: over the global batches
        loss, images = loss_sum / max(images, 1), int(images)
        seconds = time.perf_counter() - epoch_start
        result.train_seconds += seconds
        result.images_seen += images
        result.steps = epoch * plan.steps_per_epoch + steps
        stats = EpochStats(epoch, plan.epochs, loss, images, seconds, job.optimizer.param_groups[0]["lr"],
                           result.steps, prior + time.perf_counter() - started, result.img_per_s)
        end = job.end_epoch(stats)
        result.history.append(end.record)
        line = (f"epoch {epoch + 1}/{plan.epochs}  loss {loss:.4f}" + (f"  {end.text}" if end.text else "")
                + f"  {images / seconds:.0f} img/s  {seconds:.1f} s" + (f"  {end.note}" if end.note else ""))
        console.print(line)
        run.log(line)
        job.after_record(stats, result.history)
        if _checkpoint_due(last_save, end.stop or epoch == plan.epochs - 1):
            run.save_checkpoint({"epoch": epoch, "model": job.model_state(), "optimizer": job.optimizer.state_dict(),
                                 "history": result.history, "elapsed": prior + time.perf_counter() - started,
                                 "images_seen": result.images_seen, "train_seconds": result.train_seconds,
                                 "steps": result.steps, **job.extra_state()}, config, may_change)
            last_save = time.perf_counter()
        if end.stop:
            console.print(end.stop)
            run.log(end.stop)
            result.stopped_early = end.stop
            break
    result.elapsed = prior + time.perf_counter() - started
    return result


def checkpoint_interval() -> float:
    """Seconds between checkpoints (``$MEDPEFT_CHECKPOINT_SECONDS``, default 10; 0 = every epoch)."""
    value = os.environ.get("MEDPEFT_CHECKPOINT_SECONDS", "").strip()
    try:
        seconds = float(value) if value else CHECKPOINT_SECONDS
    except ValueError:
        raise ValueError(f"MEDPEFT_CHECKPOINT_SECONDS must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"MEDPEFT_CHECKPOINT_SECONDS must be a number of seconds >= 0, got {value!r}")
    return seconds


def _checkpoint_due(last_save: float, final: bool) -> bool:
    """Write this epoch's checkpoint: the first epoch, the last one, and then whenever
    ``checkpoint_interval()`` seconds have passed since the previous one."""
    return final or time.perf_counter() - last_save >= checkpoint_interval()


def epoch_loader(dataset: Dataset, settings: LoopSettings, seed: int) -> DataLoader:
    """The epoch's shuffled batches; under data parallelism this process's slice of each of them
    (the global batches are the ones a single process draws: runtime/distributed.py)."""
    generator = torch.Generator().manual_seed(seed)
    rank, world = rank_world()
    if world == 1:
        return DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, generator=generator,
                          num_workers=settings.num_workers, pin_memory=settings.pin_memory)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), settings.batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=ShardedBatches(batches, rank, world), generator=generator,
                      num_workers=settings.num_workers, pin_memory=settings.pin_memory)


def _train_epoch(job: Job, loader: DataLoader, steps: int, epoch: int, plan: Plan, schedule: dict,
                 settings: LoopSettings, run: RunDir, autocast, console: Console, progress: bool):
    job.model.train()
    total_loss, seen = 0.0, 0
    world = rank_world()[1]
    with EpochProgress(steps, f"epoch {epoch + 1}/{plan.epochs}", console, enabled=progress) as bar:
        for step, batch in enumerate(loader):
            if step == steps:
                break
            set_lr(job.optimizer, lr_at(epoch * plan.steps_per_epoch + step, **schedule))
            with autocast or contextlib.nullcontext():
                loss, images = job.loss(batch)
            # data parallel: DDP averages over processes, so weigh each slice's mean by its share
            # of the global batch (slices differ by one where the batch does not divide evenly)
            scale = images * world / sum_over_ranks(images)[0] if world > 1 else 1.0
            optimizer_step(loss * scale if world > 1 else loss, job.model, job.optimizer, settings.clip_grad,
                           epoch=epoch, step=step, run=run)
            total_loss += loss.item() * images
            seen += images
            bar.advance(loss=total_loss / seen, images=images)
    return total_loss / max(seen, 1), seen


@torch.no_grad()
def heldout_loss(model: nn.Module, loss: Callable[[object, torch.Generator], tuple[torch.Tensor, int]],
                 images: Dataset, batch_size: int, seed: int, autocast=None) -> float | None:
    """Mean of ``loss(batch, generator) -> (mean loss, items)`` over ``images`` (None when empty),
    comparable across epochs: fixed batches in order, a ``generator`` seeded with ``seed`` for the
    loss's own draws (MAE's masks, diffusion's noise and timesteps), and the global RNG seeded with
    ``seed`` inside a fork for the rest (e.g. augmented views), so training's random stream is
    untouched. ``model`` is scored in eval mode and left in the mode it was in."""
    if len(images) == 0:
        return None
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
            with autocast or contextlib.nullcontext():
                value, count = loss(batch, generator)
            total += value.item() * count
    model.train(was_training)
    return total / len(images)
