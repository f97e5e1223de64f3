"""The demo end to end on a miniature config: pretrain once, fine-tune the grid, write the table,
and a second call reuses both the cached backbone and the finished runs."""
from __future__ import annotations

import re

import pytest
from rich.console import Console

from medpeft.studies import demo as demo_module
from medpeft.studies.demo import DemoConfig, run_demo
from medpeft.models import BackboneConfig
from medpeft.models.cache import checkpoint_dir
from medpeft.runtime import RunDir

QUIET = Console(quiet=True)


def tiny_demo(**overrides) -> DemoConfig:
    return DemoConfig(**{
        "data": "synthetic-cxr?n=64&n_val=16&n_test=32&size=16",
        "backbone": BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 2}),
        "epochs": {0.01: 2, 0.1: 1, 1.0: 1}, "batch_size": 16, "n_bootstrap": 10,
        "pretrain_data": "synthetic-cxr?n=32&n_val=8&n_test=1&size=16&seed=1", "pretrain_epochs": 1,
        "pretrain_name": "test-demo-mae", **overrides})


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))


def test_demo_pretrains_once_fine_tunes_every_cell_and_reuses_everything(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    markdown = run_demo(out, console=QUIET, config=tiny_demo())

    assert (checkpoint_dir("test-demo-mae") / "checkpoint.pth").is_file()
    for method in ("fft", "linear", "lora"):
        for fraction in ("0.01", "0.1", "1"):
            run = RunDir(out / f"mae-{method}-f{fraction}")
            assert run.is_complete()
            assert run.load_config()["backbone"]["checkpoint"] == "test-demo-mae"
    assert (out / "table.md").read_text() == markdown
    assert "MAE-pretrained backbone 'test-demo-mae'" in markdown
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"FFT", "Linear probe", "LoRA r=8"}
    # three AUROC cells (percent, the best of a column bold) per method row; the other rows
    # carry their difference to FFT, MED-PEFT style
    assert len(re.findall(r"\| (\*\*)?\d{1,3}\.\d ", rows["FFT"])) == 3
    assert not re.search(r"[↑↓=]\d", rows["FFT"])
    assert len(re.findall(r" [↑↓=]\d{1,3}\.\d", rows["LoRA r=8"])) == 3

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished demo must not train again")

    monkeypatch.setattr(demo_module, "finetune", must_not_run)
    monkeypatch.setattr("medpeft.pretrain.ensure.pretrain", must_not_run)
    again = run_demo(out, console=QUIET, config=tiny_demo())
    assert again.split("Made by")[0] == markdown.split("Made by")[0]


def test_demo_without_pretraining_says_the_backbone_is_random(tmp_path):
    markdown = run_demo(tmp_path / "demo", console=QUIET,
                        config=tiny_demo(pretrain=False, methods=("linear",), fractions=(1.0,)))
    assert "randomly initialised backbone" in markdown
    assert RunDir(tmp_path / "demo" / "scratch-linear-f1").is_complete()
    assert not checkpoint_dir("test-demo-mae").exists()
