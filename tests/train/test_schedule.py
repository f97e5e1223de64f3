"""The learning-rate schedule against its closed form: warmup start, peak, cosine middle and floor.

``lr_at(step)`` (0-based) with peak ``lr``, floor ``m``, ``W`` warmup and ``T`` total steps:
``lr * (step + 1) / (W + 1)`` while ``step < W`` (the first step is not taken at lr 0), then
``m + (lr - m) * (1 + cos(pi * p)) / 2`` with ``p = (step - W) / (T - W)``, held at ``m`` from
``p = 1`` on. The values below are worked out by hand from that formula, not read from a run.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from medpeft.train import finetune
from medpeft.runtime.schedule import lr_at, set_lr

from .tiny import QUIET, tiny_run

LR, FLOOR = 0.1, 0.001
SCHEDULE = dict(lr=LR, min_lr=FLOOR, warmup_steps=4, total_steps=14)


@pytest.mark.parametrize("step,expected", [
    (0, LR / 5),  # warmup start: (0 + 1) / (4 + 1)
    (1, LR * 2 / 5),
    (3, LR * 4 / 5),  # last warmup step
    (4, LR),  # peak: first step after warmup, p = 0
    (9, (LR + FLOOR) / 2),  # p = 5 / 10: half way down
    (14, FLOOR),  # p = 1: the floor
    (20, FLOOR),  # past the end: stays at the floor
])
def test_warmup_then_cosine_values(step, expected):
    assert lr_at(step, **SCHEDULE) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cosine_at_a_quarter_and_fractional_warmup():
    # p = 2.5 / 10 = 1/4: m + (lr - m) * (1 + cos(pi / 4)) / 2
    assert lr_at(6.5, **SCHEDULE) == pytest.approx(FLOOR + (LR - FLOOR) * (1 + math.sqrt(0.5)) / 2)
    # warmup of 2.5 steps (0.5 epoch of 5 steps): steps 0, 1, 2 warm up, step 3 is p = 0.5 / 7.5
    half = dict(lr=LR, min_lr=0.0, warmup_steps=2.5, total_steps=10)
    assert lr_at(2, **half) == pytest.approx(LR * 3 / 3.5)
    assert lr_at(3, **half) == pytest.approx(LR * (1 + math.cos(math.pi * 0.5 / 7.5)) / 2)


def test_no_warmup_starts_at_the_peak_and_the_schedule_rises_then_falls():
    assert lr_at(0, lr=LR, min_lr=0.0, warmup_steps=0, total_steps=10) == pytest.approx(LR)
    values = [lr_at(s, **SCHEDULE) for s in range(16)]
    assert values.index(max(values)) == 4
    assert all(a < b for a, b in itertools.pairwise(values[:5]))  # strictly rising to the peak (step 4)
    assert all(a > b for a, b in itertools.pairwise(values[4:15]))  # strictly falling to the floor (step 14)


def test_set_lr_multiplies_each_groups_lr_scale():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr_scale": 0.25},
                                 {"params": [params[1]], "lr_scale": 1.0},
                                 {"params": [params[2]]}], lr=1.0)
    set_lr(optimizer, 0.02)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.02, 0.02])


def test_the_training_loop_follows_the_schedule_per_step(tmp_path):
    """96 images in batches of 48: 2 steps per epoch; warmup 1.5 epochs = 3 steps; 6 in all.
    The lr logged for an epoch is that of its last step (1, 3, 5): lr * 2/4 in the warmup,
    the peak at step 3 (p = 0), then p = 2/3: m + (lr - m) * (1 + cos(2 pi / 3)) / 2."""
    config = tiny_run("lora", epochs=3, batch_size=48, lr=0.01, min_lr=0.001, warmup_epochs=1.5, layer_decay=1.0)
    metrics = finetune(config, tmp_path / "run", console=QUIET, progress=False)
    logged = [h["lr"] for h in metrics["history"]]
    assert logged == pytest.approx([0.01 / 2, 0.01, 0.001 + (0.01 - 0.001) / 4], rel=1e-12)
