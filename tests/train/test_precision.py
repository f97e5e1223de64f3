"""A short bf16 run stays close to its fp32 twin (what --precision auto may switch to on AMX CPUs),
and it did compute in bf16.

Same config and seed, 6 optimiser steps of a 2-block ViT on tiny synthetic data: bf16 autocast
rounds every matmul input to an 8-bit mantissa, so the runs are not equal, but the tolerance
below is what it may cost: training losses within 2% of each other at every epoch, and
validation and test macro AUROC within 0.03 (on 48 and 64 images). Measured on this
project's CPU: losses 0.05% apart, AUROCs 0.002 apart.

Closeness alone would also hold for two fp32 runs, so each run records, from a forward hook on
the classifier (a Linear, in the trainable part whether or not the feature cache is active),
the autocast state inside the forward and the dtype of the classifier's output: every forward
of the bf16 run (training steps, validation, test) is under bf16 autocast and yields bf16
logits, every forward of the fp32 run under no autocast with fp32 logits. The run's log names
the precision too.
"""
from __future__ import annotations

import pytest
import torch

from medpeft.train import finetune
from medpeft.train import finetuning as train_loop

from .tiny import QUIET, tiny_run

LOSS_RTOL = 0.02
AUROC_ATOL = 0.03
STEPS = 6  # 96 training images, batch 32, 2 epochs


def recording_build(monkeypatch) -> list[dict]:
    """Make the trainer's model build hook the classifier; returns the list the hook fills."""
    seen: list[dict] = []
    build = train_loop.build_model

    def build_and_hook(*args, **kwargs):
        model, method, report = build(*args, **kwargs)

        def record(module, inputs, output):
            enabled = torch.is_autocast_enabled("cpu")
            seen.append({"training": module.training, "autocast": enabled,
                         "autocast_dtype": torch.get_autocast_dtype("cpu") if enabled else None,
                         "output": output.dtype})

        model.get_classifier().register_forward_hook(record)
        return model, method, report

    monkeypatch.setattr(train_loop, "build_model", build_and_hook)
    return seen


def train(monkeypatch, method, precision, out):
    with monkeypatch.context() as patch:  # undone after the run: the next run hooks a model of its own
        seen = recording_build(patch)
        result = finetune(tiny_run(method, precision=precision), out, console=QUIET, progress=False)
    return result, seen, (out / "log.txt").read_text()


@pytest.mark.parametrize("method", ["fft", "lora"])
def test_bf16_run_stays_within_tolerance_of_fp32(tmp_path, monkeypatch, method):
    fp32, fp32_seen, fp32_log = train(monkeypatch, method, "fp32", tmp_path / "fp32")
    bf16, bf16_seen, bf16_log = train(monkeypatch, method, "bf16", tmp_path / "bf16")

    # the mechanism: where each run computed, seen from inside its forwards
    for seen in (fp32_seen, bf16_seen):
        assert sum(s["training"] for s in seen) == STEPS  # one forward per optimiser step
        assert sum(not s["training"] for s in seen) >= 2  # validation and test
    assert all(s["autocast"] is False and s["output"] == torch.float32 for s in fp32_seen), fp32_seen
    assert all(s["autocast"] is True and s["autocast_dtype"] == torch.bfloat16 and s["output"] == torch.bfloat16
               for s in bf16_seen), bf16_seen
    assert "precision fp32 (as configured)" in fp32_log and "precision bf16 (as configured)" in bf16_log

    # bf16 rounding shows in the losses (identical histories would mean the same arithmetic) ...
    assert [e["train_loss"] for e in bf16["history"]] != [e["train_loss"] for e in fp32["history"]]
    # ... but costs no more than the stated tolerance
    assert len(bf16["history"]) == len(fp32["history"]) == 2
    for a, b in zip(fp32["history"], bf16["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=LOSS_RTOL)
    for split in ("val", "test"):
        assert bf16[split]["auroc"] == pytest.approx(fp32[split]["auroc"], abs=AUROC_ATOL)
