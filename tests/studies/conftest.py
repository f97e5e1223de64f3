"""Study fixtures: tiny study files written by the tests, a private cache, and the PostgreSQL
server that .ci/run starts (MEDPEFT_TEST_POSTGRES)."""
from __future__ import annotations

import os
import uuid

import pytest
import yaml

from ..conftest import in_ci

TINY_DATA = "synthetic-cxr?n=96&n_val=48&n_test=64&size=16"
TINY_BACKBONE = {"name": "vit_tiny", "img_size": 16, "patch_size": 8, "timm_kwargs": {"depth": 1}}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))


def write_study(folder, name="tiny", **overrides) -> str:
    """A study file: synthetic data, a 1-block ViT, FFT and LoRA, 1 epoch (overridable)."""
    values = {
        "name": name,
        "data": [{"spec": TINY_DATA, "label": "synth"}],
        "fractions": [0.5, 1.0],
        "seeds": [0],
        "backbones": [{"label": "tiny", "backbone": TINY_BACKBONE}],
        "methods": [{"name": "fft", "label": "FFT"}, {"name": "lora", "label": "LoRA", "options": {"rank": 2}}],
        "train": {"epochs": 1, "batch_size": 32, "n_bootstrap": 10},
        **overrides,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return str(path)


def postgres_server() -> str:
    """The test server's URL, or a skip (a failure in CI: any truthy ``$CI``) when there is none."""
    url = os.environ.get("MEDPEFT_TEST_POSTGRES")
    if not url:
        if in_ci():
            pytest.fail("MEDPEFT_TEST_POSTGRES is not set: .ci/run must start PostgreSQL")
        pytest.skip("no PostgreSQL server (set MEDPEFT_TEST_POSTGRES=postgresql://user:pw@host/db, as .ci/run does)")
    return url


@pytest.fixture
def postgres_url():
    """A fresh database name on the test server, or a skip (a failure in CI) when there is none."""
    return postgres_server(), f"t{uuid.uuid4().hex[:10]}"
