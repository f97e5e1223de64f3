"""Seeding: one call seeds Python, NumPy and torch; every epoch reseeds from (seed, epoch), so a
run resumed after epoch k continues exactly as if it had never stopped."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` (0-based) of a run seeded ``seed``."""
    return seed * 100_003 + epoch
