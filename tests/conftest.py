"""Shared fixtures: paths to the real data beside the repo (skipped cleanly when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDPEFT_SHARED", REPO.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not present at {path}")
    return path


@pytest.fixture(scope="session")  # a path only: module-scoped fixtures can use it
def medmnist_root() -> Path:
    """Folder with the real PneumoniaMNIST/BreastMNIST .npz files (../shared/data/medmnist)."""
    root = SHARED / "data" / "medmnist"
    _require(root / "pneumoniamnist.npz")
    return root


@pytest.fixture
def splits_root() -> Path:
    """Folder with MED-PEFT's split lists (../shared/data/splits)."""
    return _require(SHARED / "data" / "splits")
