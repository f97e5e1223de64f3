"""Early stopping on validation AUROC: when the loop stops, and which weights it scores on test.

The validation AUROC that the loop sees is scripted: the evaluate function the loop calls is
wrapped so that its in-training validation scores follow a given sequence (the real
evaluation still runs; test scores are untouched). Every call records the trainable weights
the model held, so the test can check that the test split was scored with exactly the weights
of the best validation epoch.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from medpeft.train import finetune
from medpeft.train import finetuning as loop_module

from .tiny import QUIET, tiny_run


def script_validation(monkeypatch, val_aurocs: list[float]) -> list[tuple[str, dict]]:
    """Make the loop's validation AUROCs follow ``val_aurocs``; return the recorded scorings,
    (split, trainable weights at the time) in call order: each validation during training
    ("val"), then, after training, the threshold choice on validation ("thresholds") and the
    test predictions ("test")."""
    calls: list[tuple[str, dict]] = []

    def weights(model):
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def spy(real, name, script=False):
        def scored(model, loader, *args, **kwargs):
            result = real(model, loader, *args, **kwargs)
            calls.append((name, weights(model)))
            if script:
                result = {**result, "auroc": val_aurocs[sum(s == "val" for s, _ in calls) - 1]}
            return result
        return scored

    monkeypatch.setattr(loop_module, "evaluate", spy(loop_module.evaluate, "val", script=True))
    monkeypatch.setattr(loop_module, "validation_thresholds", spy(loop_module.validation_thresholds, "thresholds"))
    monkeypatch.setattr(loop_module, "predict", spy(loop_module.predict, "test"))
    return calls


def equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("val_aurocs,patience,best_epoch", [
    ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 1, 1),  # falls every epoch: stop after epoch 2
    ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 2, 1),  # ... after epoch 3
    ([0.6, 0.8, 0.7, 0.75, 0.5, 0.4], 2, 2),  # a later best, and a recovery that does not beat it
])
def test_stops_patience_epochs_after_the_best_and_scores_test_with_the_best_weights(
        val_aurocs, patience, best_epoch, tmp_path, monkeypatch):
    calls = script_validation(monkeypatch, val_aurocs)
    metrics = finetune(tiny_run("lora", epochs=len(val_aurocs), patience=patience), tmp_path / "run",
                       console=QUIET, progress=False)

    assert metrics["best_epoch"] == best_epoch
    assert metrics["epochs_run"] == best_epoch + patience
    assert [h["val_auroc"] for h in metrics["history"]] == val_aurocs[:best_epoch + patience]
    assert "early stopping" in (tmp_path / "run" / "log.txt").read_text()

    in_training = [state for split, state in calls[:metrics["epochs_run"]]]
    assert [split for split, _ in calls] == ["val"] * metrics["epochs_run"] + ["thresholds", "test"]
    best, last = in_training[best_epoch - 1], in_training[-1]
    assert not equal_states(best, last), "training did not change the weights after the best epoch"
    test_state = calls[metrics["epochs_run"] + 1][1]
    assert equal_states(test_state, best), "test was not scored with the best epoch's weights"
    assert equal_states(calls[metrics["epochs_run"]][1], best), "thresholds not chosen with the best weights"
    saved = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert equal_states({k: saved[k] for k in best}, best)


def test_without_patience_every_epoch_runs(tmp_path, monkeypatch):
    calls = script_validation(monkeypatch, [0.9, 0.8, 0.7])
    metrics = finetune(tiny_run("lora", epochs=3), tmp_path / "run", console=QUIET, progress=False)
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 1
    assert [split for split, _ in calls] == ["val", "val", "val", "thresholds", "test"]
    assert equal_states(calls[4][1], calls[0][1])  # test still scored with epoch 1's weights


def test_patience_must_be_at_least_one():
    with pytest.raises(ValueError, match="patience"):
        tiny_run("lora", patience=0)


def test_early_stopping_never_ends_a_run_before_min_steps(tmp_path, monkeypatch):
    """min_steps is the run's floor: patience runs out after epoch 2 here, but the run goes on
    until it has taken min_steps optimiser steps, then stops at the next validation."""
    val_aurocs = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    script_validation(monkeypatch, val_aurocs)
    plain = finetune(tiny_run("lora", epochs=len(val_aurocs), patience=1), tmp_path / "plain",
                     console=QUIET, progress=False)
    per_epoch = plain["history"][0]["steps"]
    assert plain["epochs_run"] == 2  # without a floor: stopped one validation after the best
    floor = 4 * per_epoch + 1  # more than 4 epochs of steps, so the floor is met during epoch 5
    monkeypatch.undo()
    script_validation(monkeypatch, val_aurocs)
    floored = finetune(tiny_run("lora", epochs=len(val_aurocs), patience=1, min_steps=floor), tmp_path / "floored",
                       console=QUIET, progress=False)
    assert floored["epochs_run"] == 5
    assert floored["history"][-1]["steps"] >= floor > floored["history"][-2]["steps"]
    assert floored["best_epoch"] == 1  # the best is still chosen on validation
    assert "early stopping" in (tmp_path / "floored" / "log.txt").read_text()
