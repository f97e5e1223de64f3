"""Checkpoint containers and key prefixes of published training code, unwrapped bit for bit.

``read_state_dict`` takes the tensors from the first container key present of ``model``,
``state_dict``, ``teacher``, ``model_ema`` (MAE, Lightning-style, DINO, timm EMA), and strips
``module.`` (DistributedDataParallel), then ``backbone.``, then ``encoder.`` when every key
carries the prefix. Each combination below must load into a differently initialised model
with every tensor equal to the saved one.
"""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from medpeft.models import BackboneConfig, create_backbone, load_pretrained, read_state_dict

WRAPPERS = [None, "model", "state_dict", "teacher", "model_ema"]
PREFIXES = ["", "module.", "backbone.", "encoder.", "module.backbone.", "module.encoder."]


def tiny_vit(seed: int):
    torch.manual_seed(seed)
    return create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0,
                                          timm_kwargs={"depth": 2}), 3)


@pytest.fixture(scope="module")
def source():
    return tiny_vit(seed=0).state_dict()


def wrapped(state: dict, wrapper: str | None, prefix: str):
    state = {prefix + k: v for k, v in state.items()}
    if wrapper is None:
        return state
    return {wrapper: state, "epoch": 7, "args": {"lr": 1e-3}}  # training extras beside the weights


@pytest.mark.parametrize("prefix", PREFIXES, ids=lambda p: p or "no-prefix")
@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w or "plain")
def test_wrappers_and_prefixes_load_bit_for_bit(wrapper, prefix, source, tmp_path):
    torch.save(wrapped(source, wrapper, prefix), tmp_path / "ckpt.pth")
    state = read_state_dict(tmp_path / "ckpt.pth")
    assert set(state) == set(source)
    assert all(torch.equal(state[k], v) for k, v in source.items())

    model = tiny_vit(seed=1)
    report = load_pretrained(model, tmp_path / "ckpt.pth")
    assert report.missing == [] and report.unused == [] and report.dropped == []
    own = model.state_dict()
    assert [k for k, v in source.items() if not torch.equal(own[k], v)] == []


def test_prefixes_in_safetensors_files(source, tmp_path):
    save_file({f"module.{k}": v.contiguous() for k, v in source.items()}, str(tmp_path / "ckpt.safetensors"))
    state = read_state_dict(tmp_path / "ckpt.safetensors")
    assert set(state) == set(source) and all(torch.equal(state[k], v) for k, v in source.items())


def test_the_first_container_key_wins(source, tmp_path):
    """A checkpoint with both live weights and an EMA copy: ``model`` is read, not ``model_ema``."""
    ema = {k: v + 1.0 if v.is_floating_point() else v for k, v in source.items()}
    torch.save({"model_ema": ema, "model": source}, tmp_path / "both.pth")
    state = read_state_dict(tmp_path / "both.pth")
    assert all(torch.equal(state[k], v) for k, v in source.items())


def test_a_prefix_on_only_some_keys_is_kept(source, tmp_path):
    """Stripping is all-or-nothing, so a model's own ``encoder``-named submodule keeps its name."""
    state = {("module." + k if k.startswith("blocks.") else k): v for k, v in source.items()}
    torch.save(state, tmp_path / "mixed.pth")
    assert set(read_state_dict(tmp_path / "mixed.pth")) == set(state)


def test_a_dino_teacher_with_its_projection_head_loads_the_backbone(source, tmp_path):
    teacher = {f"module.backbone.{k}": v for k, v in source.items() if not k.startswith("head.")}
    teacher.update({"module.head.mlp.0.weight": torch.randn(64, 192),  # DINOHead's MLP and last layer
                    "module.head.last_layer.weight_g": torch.ones(1, 64)})
    torch.save({"student": teacher, "teacher": teacher, "epoch": 100}, tmp_path / "dino.pth")
    model = tiny_vit(seed=1)
    load_pretrained(model, tmp_path / "dino.pth")
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.items() if not k.startswith("head."))
