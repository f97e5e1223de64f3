"""Resuming a PEFT run after a kill gives exactly the uninterrupted run (test_finetune.py covers fft).

A PEFT checkpoint holds only the adapted state (trainable tensors plus BatchNorm running
statistics) over a base rebuilt from the seed, so what resuming must restore differs from fft:
- ``lora`` on the tiny ViT: the LoRA factors and the head, the optimizer state, dropout RNG;
- ``ssf`` on a ResNet-50 with live branches: its scales and shifts, and the running statistics
  of every BatchNorm, which train-mode forward passes change although no optimizer touches them.
The run is killed after one optimizer step of its third epoch (whose partial update, and the
statistics that step changed, must be discarded), then resumed.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from medpeft.train import finetune
from medpeft.runtime import loop as runtime_loop

from .tiny import QUIET, TINY_RESNET, TINY_VIT, tiny_run


def kill_after_one_step_of_epoch(monkeypatch, kill_epoch: int):
    """The loop dies (KeyboardInterrupt) right after the first optimiser step of ``kill_epoch``."""
    real = runtime_loop.optimizer_step

    def killed(*args, **kwargs):
        real(*args, **kwargs)
        if kwargs["epoch"] == kill_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(runtime_loop, "optimizer_step", killed)
    return real


@pytest.mark.parametrize("method,backbone,data", [
    ("lora", TINY_VIT, "synthetic-cxr?n=96&n_val=48&n_test=64&size=16"),
    ("ssf", TINY_RESNET, "synthetic-cxr?n=64&n_val=32&n_test=32&size=32"),
], ids=["lora-vit", "ssf-resnet"])
def test_resumed_peft_run_equals_the_uninterrupted_one(method, backbone, data, tmp_path, monkeypatch):
    config = tiny_run(method, backbone, epochs=3, data=data, keep_checkpoint=True)
    reference = finetune(config, tmp_path / "whole", console=QUIET, progress=False)

    real = kill_after_one_step_of_epoch(monkeypatch, kill_epoch=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(config, tmp_path / "killed", console=QUIET, progress=False)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    checkpoint = torch.load(tmp_path / "killed" / "checkpoint-last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    if backbone is TINY_RESNET:
        stats = [k for k in checkpoint["model"] if k.endswith((".running_mean", ".running_var"))]
        assert len(stats) == 2 * 53, "every BatchNorm's running statistics belong to the checkpoint"

    monkeypatch.setattr(runtime_loop, "optimizer_step", real)
    resumed = finetune(config, tmp_path / "killed", resume=True, console=QUIET, progress=False)
    assert resumed["history"] == reference["history"]
    assert resumed["val"] == reference["val"] and resumed["test"] == reference["test"]
    whole = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    again = load_file(str(tmp_path / "killed" / "adapter_model.safetensors"))
    assert whole.keys() == again.keys()
    assert [k for k in whole if not torch.equal(whole[k], again[k])] == []
