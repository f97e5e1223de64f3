"""How often the epoch loop writes ``checkpoint-last.pt`` (runtime/loop.py) and what it costs a
resumed run: nothing. The test suite sets ``MEDPEFT_CHECKPOINT_SECONDS=0`` (every epoch,
tests/conftest.py); these tests set the default-like cadence themselves."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from medpeft.runtime import loop
from medpeft.train import finetune
from tests.train.test_finetune import QUIET, kill_in_third_epoch, tiny_config


def test_a_long_interval_saves_the_first_epoch_and_a_resume_still_matches(tmp_path, monkeypatch):
    """With an hour between checkpoints a run killed in its third epoch has only epoch 1's
    checkpoint; resuming replays epoch 2 and ends bit-identical to the uninterrupted run."""
    monkeypatch.setenv("MEDPEFT_CHECKPOINT_SECONDS", "3600")
    config = tiny_config(method="fft", keep_checkpoint=True, epochs=3)
    reference = finetune(config, tmp_path / "whole", console=QUIET)
    assert torch.load(tmp_path / "whole" / "checkpoint-last.pt", weights_only=True)["epoch"] == 2  # the last epoch

    kill_in_third_epoch(config, tmp_path / "killed", monkeypatch)
    assert torch.load(tmp_path / "killed" / "checkpoint-last.pt", weights_only=True)["epoch"] == 0
    resumed = finetune(config, tmp_path / "killed", resume=True, console=QUIET)
    assert resumed["test"] == reference["test"]
    assert resumed["history"] == reference["history"]
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_interval_decides_which_epochs_save(monkeypatch):
    monkeypatch.setenv("MEDPEFT_CHECKPOINT_SECONDS", "0")
    assert loop._checkpoint_due(last_save=loop.time.perf_counter(), final=False)
    monkeypatch.setenv("MEDPEFT_CHECKPOINT_SECONDS", "3600")
    assert not loop._checkpoint_due(last_save=loop.time.perf_counter(), final=False)
    assert loop._checkpoint_due(last_save=loop.time.perf_counter(), final=True)
    assert loop._checkpoint_due(last_save=-float("inf"), final=False)
    monkeypatch.delenv("MEDPEFT_CHECKPOINT_SECONDS")
    assert loop.checkpoint_interval() == loop.CHECKPOINT_SECONDS == 10.0


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_interval_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("MEDPEFT_CHECKPOINT_SECONDS", value)
    with pytest.raises(ValueError, match="MEDPEFT_CHECKPOINT_SECONDS"):
        loop.checkpoint_interval()
