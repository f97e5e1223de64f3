"""Shared fixtures: paths to the real data beside the repo.

Locally a missing path skips the tests that need it. In CI (``CI=true``, as GitHub Actions and
most CI services set it) the data is expected to be there, so a missing path fails the test
with the path named: a moved file must not silently turn real-data tests into skips.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDPEFT_SHARED", REPO.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def require_shared(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it in CI."""
    if not path.exists():
        if in_ci():
            pytest.fail(f"real data not present at {path} (CI=true: the shared data must be there; "
                        "set MEDPEFT_SHARED if it moved)", pytrace=False)
        pytest.skip(f"real data not present at {path}")
    return path


@pytest.fixture
def forbid(monkeypatch):
    """``forbid("medpeft.train.finetune", "why")``: the test fails with ``why`` if that function
    is called (proof that a refused input, or a cached result, never reaches the work)."""
    def replace(target: str, why: str) -> None:
        def called(*args, **kwargs):
            raise AssertionError(why)
        monkeypatch.setattr(target, called)
    return replace


@pytest.fixture(scope="session")  # a path only: module-scoped fixtures can use it
def medmnist_root() -> Path:
    """Folder with the real PneumoniaMNIST/BreastMNIST .npz files (../shared/data/medmnist)."""
    root = SHARED / "data" / "medmnist"
    require_shared(root / "pneumoniamnist.npz")
    return root


@pytest.fixture
def splits_root() -> Path:
    """Folder with MED-PEFT's split lists (../shared/data/splits)."""
    return require_shared(SHARED / "data" / "splits")
