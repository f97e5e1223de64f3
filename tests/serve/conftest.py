"""Runs shared by the serving tests: made once per session, in seconds.

Four runs over one base (seed 0, the same tiny ViT): LoRA on PneumoniaMNIST and on BreastMNIST
(another task, another rank), a linear probe and BitFit; and one LoRA run of seed 1, whose
randomly initialised base differs, so it needs a base of its own.
"""
from __future__ import annotations

import pytest

from ..runs import BREAST, train


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("served")
    return {"pneu-lora": train(root / "pneu-lora"),
            "breast-lora": train(root / "breast-lora", data=BREAST, rank=4),
            "breast-linear": train(root / "breast-linear", "linear", data=BREAST),
            "pneu-bitfit": train(root / "pneu-bitfit", "bitfit"),
            "pneu-seed1": train(root / "pneu-seed1", seed=1)}


@pytest.fixture(scope="session")
def xray_images():
    """A few real chest X-rays (PneumoniaMNIST's test split, 28 x 28 uint8)."""
    from medpeft.data import load_dataset

    return load_dataset("medmnist:pneumoniamnist").test.images.array[:12]


@pytest.fixture(scope="session")
def live_server(served_runs, tmp_path_factory):
    """``medpeft serve`` in its own process on 127.0.0.1 (a free port) with two LoRA runs and BitFit."""
    from .live import LiveServer

    log = tmp_path_factory.mktemp("server") / "serve.log"
    server = LiveServer({name: served_runs[name] for name in ("pneu-lora", "breast-lora", "pneu-bitfit")},
                        "--max-upload-mb", "0.5", "--threads", "1", log=log)
    try:
        yield server.wait_ready()
    finally:
        server.stop()
