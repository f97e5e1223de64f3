"""Diffusion runs end to end on tiny models: the model learns (overfits a tiny set), sampling is
deterministic per seed, an adaptation run scores itself against a judge with its real-vs-real
floor, and the CLI generates a grid."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medpeft.cli import main
from medpeft.diffusion import images_for, load_model, train_diffusion
from medpeft.runtime import RunConfig
from medpeft.train import finetune

from .conftest import TINY_DATA, tiny_config


def test_the_model_overfits_a_tiny_set(tmp_path):
    """8 images, 30 epochs: the denoising loss falls far below its start."""
    config = tiny_config(data={"specs": ["synthetic-cxr?n=8&n_val=8&n_test=8&size=16"]},
                         train={"steps": None, "epochs": 30, "batch_size": 8, "lr": 3e-3},
                         sample={"grid_images": 0})
    metrics = train_diffusion(config, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in metrics["history"]]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert metrics["val_loss"] is not None and (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_sampling_is_deterministic_per_seed(tiny_base):
    unet, config, method = load_model(str(tiny_base))
    assert method.name == "fft"  # a base model is full fine-tuning (its config says full, the old name)
    prompts = ["a chest X-ray with effusion"] * 3
    first = images_for(unet, config, prompts, 1, seed=7)
    assert first.shape == (3, 1, 16, 16) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, images_for(unet, config, prompts, 1, seed=7))
    assert not torch.equal(first, images_for(unet, config, prompts, 1, seed=8))


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge") / "judge"
    config = RunConfig.from_dict({"data": {"spec": TINY_DATA}, "method": "fft",
                                  "backbone": {"name": "vit_tiny", "img_size": 16, "patch_size": 4,
                                               "timm_kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2}},
                                  "train": {"epochs": 1, "batch_size": 16, "n_bootstrap": 0, "device": "cpu"}})
    finetune(config, folder, progress=False)
    return folder


def test_adaptation_scores_itself_with_its_floor(tiny_base, tiny_judge, tmp_path):
    config = tiny_config(base=str(tiny_base), method="lora", method_options={"rank": 2},
                         data={"fraction": 0.5}, score={"judge": str(tiny_judge), "images": 16})
    metrics = train_diffusion(config, tmp_path / "lora", progress=False)
    scores = metrics["scores"]
    for side in ("generated", "real"):
        assert set(scores[side]) >= {"fd", "precision", "recall", "cond_acc", "n"}
        assert scores[side]["n"] == 16 and scores[side]["fd"] >= 0 and 0 <= scores[side]["cond_acc"] <= 1
    assert 24 <= scores["reference_n"] <= 40  # the other half of the 64 test images (stratified by findings)
    assert 0 < metrics["trainable_params"] < metrics["total_params"]
    assert (tmp_path / "lora" / metrics["grids"][0]).is_file()
    saved = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert saved["medpeft_method"] == "lora" and saved["base"] == str(tiny_base)


def test_no_training_scores_the_base_as_it_is(tiny_base, tmp_path):
    metrics = train_diffusion(tiny_config(base=str(tiny_base), train={"steps": 0}, sample={"grid_images": 0}),
                              tmp_path / "none", progress=False)
    assert metrics["steps"] == 0 and metrics["history"] == []


def test_config_errors_are_clear(tiny_base):
    with pytest.raises(ValueError, match="give --base"):
        tiny_config(method="lora")
    with pytest.raises(ValueError, match="divisible by 2"):
        tiny_config(data={"img_size": 15})
    with pytest.raises(FileNotFoundError, match="diffusion pretrain --name"):
        train_diffusion(tiny_config(base="no-such-model", method="bias"), "/tmp/never", progress=False)


def test_cli_generate_and_finetune(tiny_base, tmp_path, capsys):
    grid = tmp_path / "grid.png"
    assert main(["diffusion", "generate", str(tiny_base), "a chest X-ray, pneumonia", "-n", "4", "--out", str(grid),
                 "--steps", "2"]) == 0
    assert grid.is_file() and grid.stat().st_size > 0
    assert main(["diffusion", "finetune", "--base", str(tiny_base), "--method", "difffit", "--data", TINY_DATA,
                 "--steps", "2", "--sample-steps", "2", "--grid-images", "0", "--out", str(tmp_path / "ft"),
                 "--no-progress"]) == 0
    saved = json.loads((tmp_path / "ft" / "adapter_config.json").read_text())
    assert saved["medpeft_method"] == "difffit"
    assert main(["diffusion", "finetune", "--base", str(tiny_base), "--method", "lora", "--rank", "0",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "rank must be at least 1" in capsys.readouterr().err


def test_a_cached_base_from_before_a_new_option_is_reused(tiny_base, tmp_path, monkeypatch):
    """A cached model whose config.yaml lacks an option added later is not remade."""
    import yaml

    from medpeft.diffusion.training import ensure_model, publish

    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    target = publish(tiny_base, "tiny")
    saved = yaml.safe_load((target / "config.yaml").read_text())
    del saved["score"]["neighbours"]  # as if written before neighbours (default 3) existed
    (target / "config.yaml").write_text(yaml.safe_dump(saved))
    weights = (target / "adapter_model.safetensors").stat().st_mtime_ns
    assert ensure_model("tiny", tiny_config(), progress=False) == target
    assert (target / "adapter_model.safetensors").stat().st_mtime_ns == weights
    assert not (tmp_path / "cache" / "diffusion-runs" / "tiny").exists()  # nothing was trained


def test_a_cached_base_made_with_another_config_is_never_replaced(tiny_base, tmp_path, monkeypatch):
    import dataclasses

    from medpeft.diffusion.training import ensure_model, publish, train_diffusion
    from medpeft.models.cache import CheckpointConflict

    monkeypatch.setenv("MEDPEFT_CACHE", str(tmp_path / "cache"))
    target = publish(tiny_base, "tiny")
    weights = (target / "adapter_model.safetensors").read_bytes()
    config = tiny_config()
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=config.train.seed + 1))
    with pytest.raises(CheckpointConflict, match=r"'tiny'.*train\.seed"):
        ensure_model("tiny", other, progress=False)
    with pytest.raises(CheckpointConflict):  # refused before training, not when publishing after it
        train_diffusion(other, tmp_path / "other", name="tiny", progress=False)
    assert not (tmp_path / "other").exists()
    assert (target / "adapter_model.safetensors").read_bytes() == weights
