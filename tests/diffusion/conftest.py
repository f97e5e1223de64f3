"""Tiny diffusion runs for the tests: 16 px, a two-level UNet with 8/16 channels, a handful of steps."""
from __future__ import annotations

import pytest

from medpeft.diffusion import DiffusionConfig, train_diffusion

TINY_DATA = "synthetic-cxr?n=48&n_val=16&n_test=64&size=16"


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


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A pretrained (4 steps) tiny base model's run directory."""
    folder = tmp_path_factory.mktemp("diffusion") / "base"
    train_diffusion(tiny_config(), folder, progress=False)
    return folder
