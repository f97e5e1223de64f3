"""--device: a malformed name fails when the config is built, a device this machine lacks when
the run starts; both are one clear error."""
from __future__ import annotations

import pytest
import torch

from medpeft.runtime import TrainConfig, resolve_device


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", ""])
def test_malformed_names_fail_when_the_config_is_built(name):
    with pytest.raises(ValueError, match="device must be one of auto | cpu | cuda | cuda:N | mps"):
        TrainConfig(device=name)


def test_a_missing_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="--device cuda: PyTorch sees no CUDA GPU on this machine"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    assert resolve_device("auto") in (torch.device("cpu"), torch.device("mps"))
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_gpu_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match="this machine has 2 CUDA device"):
        resolve_device("cuda:2")
