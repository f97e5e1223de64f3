"""Loading an adapter refuses what does not fit: another base, unknown tensors, wrong shapes.

``load_adapter`` applies the saved method to the given base and copies the saved tensors in.
An adapter is only meaningful on the base it was trained on, which ``adapter_config.json``
identifies by a sha256 fingerprint of every tensor the adapter does not hold.
"""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from medpeft.methods import apply_method, create_method, load_adapter, save_adapter
from medpeft.methods._base import ADAPTER_CONFIG, ADAPTER_WEIGHTS

from .conftest import make_inputs, make_model, perturb


@pytest.fixture
def lora_dir(tmp_path):
    """A perturbed LoRA adapter of the tiny ViT built with seed 0."""
    method = create_method("lora")
    model = apply_method(make_model("vit", seed=0), method)
    perturb(model)
    save_adapter(model, method, tmp_path)
    return tmp_path


def rewrite_weights(directory, change) -> None:
    state = load_file(str(directory / ADAPTER_WEIGHTS))
    change(state)
    save_file(state, str(directory / ADAPTER_WEIGHTS))


def test_the_same_base_loads(lora_dir):
    model, method = load_adapter(make_model("vit", seed=0), lora_dir)
    assert method.name == "lora"
    saved = load_file(str(lora_dir / ADAPTER_WEIGHTS))
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in saved.items())


def test_a_base_initialised_differently_is_refused_by_its_fingerprint(lora_dir):
    with pytest.raises(ValueError, match="base weights differ"):
        load_adapter(make_model("vit", seed=1), lora_dir)


def test_one_changed_frozen_weight_is_enough_to_refuse(lora_dir):
    base = make_model("vit", seed=0)
    with torch.no_grad():
        base.blocks[1].mlp.fc2.weight[0, 0] += 1e-3
    with pytest.raises(ValueError, match="base weights differ"):
        load_adapter(base, lora_dir)


def test_unknown_tensors_are_refused_naming_them(lora_dir):
    rewrite_weights(lora_dir, lambda state: state.update({"blocks.0.attn.qkv.lora_C_q": torch.zeros(2, 2)}))
    with pytest.raises(ValueError, match="does not have.*lora_C_q"):
        load_adapter(make_model("vit", seed=0), lora_dir)


def test_a_tensor_of_the_wrong_shape_is_refused(lora_dir):
    rewrite_weights(lora_dir, lambda state: state.update({"blocks.1.attn.qkv.lora_A_v": torch.zeros(4, 192)}))
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.qkv\.lora_A_v has shape \(4, 192\).*\(8, 192\)"):
        load_adapter(make_model("vit", seed=0), lora_dir)


def test_a_config_that_does_not_match_the_weights_is_refused(lora_dir):
    """adapter_config.json says rank 4, the file holds rank-8 factors: every shape is wrong."""
    config = json.loads((lora_dir / ADAPTER_CONFIG).read_text())
    config["method_config"]["rank"] = 4
    (lora_dir / ADAPTER_CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has shape"):
        load_adapter(make_model("vit", seed=0), lora_dir)


def test_an_adapter_missing_a_tensor_is_refused(lora_dir):
    """Loading is strict=False underneath, so a missing tensor would keep its fresh value."""
    rewrite_weights(lora_dir, lambda state: state.pop("blocks.1.attn.qkv.lora_B_v"))
    with pytest.raises(ValueError):
        load_adapter(make_model("vit", seed=0), lora_dir)


def test_an_adapter_missing_a_tensor_is_refused_naming_it(lora_dir):
    rewrite_weights(lora_dir, lambda state: state.pop("blocks.1.attn.qkv.lora_B_v"))
    with pytest.raises(ValueError, match="lora_B_v"):
        load_adapter(make_model("vit", seed=0), lora_dir)


def test_a_resnet_adapter_carries_batchnorm_statistics(tmp_path):
    """BatchNorm running statistics are adapted state: they travel with the adapter."""
    method = create_method("ssf")
    model = apply_method(make_model("resnet", seed=0), method).train()
    with torch.no_grad():
        model(make_inputs("resnet", batch=4))  # a train-mode pass moves the running statistics
    save_adapter(model, method, tmp_path)
    restored, _ = load_adapter(make_model("resnet", seed=0), tmp_path)
    stats = {k: v for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    assert len(stats) == 2 * 53
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in stats.items())
    assert not torch.equal(stats["bn1.running_mean"], torch.zeros_like(stats["bn1.running_mean"]))
