"""The epoch loop's run length: epochs, an exact step budget, a floor of steps; validation interval."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from rich.console import Console
from torch.utils.data import TensorDataset

from medpeft.runtime import EpochEnd, Job, LoopSettings, Plan, RunDir, TrainConfig, run_epochs


def settings(**kw) -> LoopSettings:
    values = dict(epochs=2, batch_size=32, seed=0, lr=1e-2, min_lr=0.0, warmup_epochs=0.0)
    return LoopSettings(**{**values, **kw})


def test_epochs_set_the_length_by_default():
    plan = Plan.of(settings(epochs=4), train_size=96)  # 3 steps per epoch
    assert (plan.steps_per_epoch, plan.total_steps, plan.epochs) == (3, 12, 4)
    assert Plan.of(settings(epochs=4), train_size=97).steps_per_epoch == 4  # a partial last batch is a step


def test_a_step_budget_overrides_epochs_and_may_end_mid_epoch():
    plan = Plan.of(settings(epochs=40, steps=7), train_size=96)
    assert (plan.total_steps, plan.epochs) == (7, 3)
    assert plan.describe() == "7 optimiser steps (3 epochs of 3 steps, the last one 1)"


def test_min_steps_raises_the_epochs_of_a_small_subset_to_whole_epochs():
    one_percent = Plan.of(settings(epochs=10, batch_size=64, min_steps=500), train_size=47)  # 1 step per epoch
    assert (one_percent.epochs, one_percent.total_steps) == (500, 500)
    plan = Plan.of(settings(epochs=10, batch_size=64, min_steps=500), train_size=470)  # 8 steps per epoch
    assert (plan.epochs, plan.total_steps) == (63, 504)  # at least 500, in whole epochs
    assert Plan.of(settings(epochs=10, batch_size=64, min_steps=20), train_size=470).epochs == 10  # long enough


class CountingJob(Job):
    """A linear model on random data; counts optimiser steps and records each epoch's stats."""

    def __init__(self):
        torch.manual_seed(0)
        self.model, self.device = nn.Linear(4, 1), torch.device("cpu")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.stepped, self.epochs = 0, []
        real_step = self.optimizer.step

        def counted(*args, **kwargs):
            self.stepped += 1
            return real_step(*args, **kwargs)

        self.optimizer.step = counted

    def loss(self, batch):
        x, y = batch
        return ((self.model(x)[:, 0] - y) ** 2).mean(), len(x)

    def end_epoch(self, stats):
        self.epochs.append((stats.epoch, stats.steps, stats.images))
        return EpochEnd({"epoch": stats.epoch})


@pytest.mark.parametrize("steps", [5, 6, 1])
def test_the_loop_takes_exactly_the_budgeted_optimiser_steps(tmp_path, steps):
    data = TensorDataset(torch.randn(96, 4), torch.randn(96))  # 3 steps of 32 per epoch
    job = CountingJob()
    result = run_epochs(job, data, settings(epochs=50, steps=steps), RunDir(tmp_path), config={}, state=None,
                        console=Console(quiet=True), progress=False)
    assert job.stepped == result.steps == steps
    epochs = -(-steps // 3)
    assert [e for e, _, _ in job.epochs] == list(range(epochs))
    last = steps - 3 * (epochs - 1)
    assert job.epochs[-1][1:] == (steps, 32 * last)  # the last epoch stops mid-way


def test_the_validation_interval_is_every_epoch_for_ordinary_runs_and_about_50_validations_beyond():
    auto = TrainConfig()
    assert [auto.validation_interval(n) for n in (1, 10, 50)] == [1, 1, 1]
    assert [auto.validation_interval(n) for n in (51, 100, 500, 501)] == [2, 2, 10, 11]
    assert TrainConfig(val_every=3).validation_interval(500) == 3


@pytest.mark.parametrize("values, message", [
    ({"steps": 0}, "steps must be at least 1"),
    ({"min_steps": -5}, "min_steps must be at least 1"),
    ({"val_every": 0}, "val_every must be at least 1"),
    ({"steps": 100, "min_steps": 500}, "cannot both be set; keep one of --steps and --min-steps"),
    ({"patience": 0}, "patience must be at least 1 validation"),
])
def test_run_length_options_are_checked(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)
