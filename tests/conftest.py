"""Shared fixtures: the real data, from inside the package or beside the repo.

PneumoniaMNIST and BreastMNIST ship inside medpeft (``medpeft/data/embedded``, checked against
their official MD5), so the tests that read them never skip. The papers' split lists may not be
copied into the repository: they are read from ``../shared`` when present; on a clone without
them, outside CI, the split-list tests run on a replica of their layout with the published line
counts and label totals they assert (``published_splits.py``). In CI (``CI`` set to any truthy
value: ``true`` as GitHub Actions and most CI services set it, ``1``, ``yes``, ...; see
:func:`in_ci`) the real lists must be there, so a missing path fails the test with the path
named: a moved file must not silently turn real-data tests into replica tests or skips.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDPEFT_SHARED", REPO.parent / "shared"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Tests kill and resume runs of a few tiny epochs at chosen epochs: a checkpoint after every
# epoch there (runtime/loop.py saves at most every 10 s by default; tests/runtime/test_checkpoint_cadence.py
# tests that default). Set in the environment, so study workers the tests start inherit it.
os.environ.setdefault("MEDPEFT_CHECKPOINT_SECONDS", "0")


NOT_CI = ("", "0", "false", "no", "off")  # $CI values (any case) that say "not CI"; unset is not CI either


def in_ci() -> bool:
    """Whether this run is in CI, where a missing prerequisite (data, a browser, PostgreSQL) must
    fail rather than skip. The one place that reads ``$CI``: any truthy value counts (``true``,
    ``1``, ``yes``, ``on``, and names such as ``CI=woodpecker`` that some services set), so no
    service's spelling silently turns those tests into skips."""
    return os.environ.get("CI", "").strip().lower() not in NOT_CI


def require_shared(path: Path) -> Path:
    """``path`` if it exists; otherwise skip the test, or fail it in CI."""
    if not path.exists():
        if in_ci():
            pytest.fail(f"real data not present at {path} (CI is set: the shared data must be there; "
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
    """Folder with the real PneumoniaMNIST/BreastMNIST .npz files: the copies shipped inside
    medpeft, whose MD5 is checked here against the official values (the same files as
    ../shared/data/medmnist)."""
    from medpeft.data.sources.medmnist import EMBEDDED, EMBEDDED_MD5, embedded_file

    for name in EMBEDDED_MD5:
        embedded_file(name)  # medpeft's own check: a DataError naming a missing or damaged copy
    return EMBEDDED


@pytest.fixture(scope="session")
def splits_root(tmp_path_factory) -> Path:
    """Folder with MED-PEFT's split lists: the real ones (../shared/data/splits), else, outside
    CI, a replica of their layout (see ``published_splits.py``); in CI their absence fails."""
    real = SHARED / "data" / "splits"
    if real.exists() or in_ci():
        return require_shared(real)
    from .published_splits import write_replica
    return write_replica(tmp_path_factory.mktemp("published-splits"))


def pytest_terminal_summary(terminalreporter, config):
    """The random order's seed, also under -q (pytest-randomly prints it only in the header):
    ``pytest --randomly-seed=N`` repeats a failing order."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and config.pluginmanager.hasplugin("randomly"):
        terminalreporter.write_line(f"test order: pytest-randomly seed {seed} (repeat with --randomly-seed={seed})")
