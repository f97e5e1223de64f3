"""Tiny diffusion runs for the tests: 16 px, a two-level UNet with 8/16 channels, a handful of steps."""
from __future__ import annotations

import pytest
import torch

from medpeft.diffusion import DiffusionConfig, train_diffusion

TINY_DATA = "synthetic-cxr?n=48&n_val=16&n_test=64&size=16"


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny UNets gain nothing from a second thread, and on a loaded 2-core machine two OpenMP
    threads that wait for each other made these tests 5-8x slower (the overfit test: 102 s with
    2 threads, 14 s with 1, same machine, same load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_values(**overrides) -> dict:
    values = {"data": {"specs": [TINY_DATA], "img_size": 16},
              "unet": {"channels": [8, 16], "attention": [False, True], "norm_groups": 4, "head_dim": 4,
                       "timesteps": 100},
              "train": {"steps": 4, "batch_size": 16, "val_images": 8, "device": "cpu"},
              "sample": {"steps": 3, "grid_images": 2, "grid_prompts": 1}}
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def tiny_config(**overrides) -> DiffusionConfig:
    return DiffusionConfig.from_dict(tiny_values(**overrides))


@pytest.fixture(scope="package")
def tiny_base(tmp_path_factory):
    """A pretrained (4 steps) tiny base model's run directory."""
    folder = tmp_path_factory.mktemp("diffusion") / "base"
    train_diffusion(tiny_config(), folder, progress=False)
    return folder
