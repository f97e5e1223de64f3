"""The HF-peft-backed methods: counts on ViT-B/16, peft's initialisations, merge/unload, metadata."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from medpeft.methods import apply_method, count_parameters, create_method, read_adapter_config, save_adapter
from medpeft.models import BackboneConfig, create_backbone

from .conftest import EXPECTED_TRAINABLE, make_inputs, make_model, perturb

VIT_B_HEAD = (768 * 14 + 14) + 2 * 768  # 14-way classifier + fc_norm


def vit_base_on_meta(name: str, options: dict | None = None):
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), 14)
        return apply_method(model, create_method(name, options))


def test_vit_base_lora_qkv_count():
    """r=8 on the whole fused qkv of 12 blocks: A (8 x 768) + B (2304 x 8) per block."""
    trainable, total = count_parameters(vit_base_on_meta("lora-qkv", {"rank": 8}))
    assert trainable == 12 * (8 * 768 + 2304 * 8) + VIT_B_HEAD == 294_912 + VIT_B_HEAD


@pytest.mark.parametrize("name,per_block", [
    ("dora", 8 * 768 + 2304 * 8 + 2304),  # LoRA + one magnitude per qkv output row
    ("ia3", 2304 + 3072),  # qkv output scale + fc2 input (MLP hidden) scale
    ("loha", 2 * 8 * (768 + 2304)),  # two rank-8 factorisations
    ("lokr", 48 * 24 + 8 * (48 + 32)),  # W1 (48 x 24) kron rank-8 W2 (48 x 32): 2304 = 48*48, 768 = 24*32
])
def test_vit_base_counts(name, per_block):
    trainable, _ = count_parameters(vit_base_on_meta(name))
    assert trainable == 12 * per_block + VIT_B_HEAD


@pytest.mark.parametrize("name,family,options", [
    ("lora-qkv", "vit", {"target_modules": ["qkv", "proj", "fc1", "fc2"], "rank": 4}),
    ("dora", "vit", {"target_modules": ["proj", "fc2"]}),
    ("ia3", "vit", {"target_modules": ["qkv", "fc1", "fc2"], "feedforward_modules": ["fc1", "fc2"]}),
    ("loha", "vit", {"target_modules": ["qkv", "fc1"], "rank": 2}),
    ("lokr", "vit", {"decompose_both": True, "rank": 2}),
    ("lokr", "vit", {"decompose_factor": 4, "target_modules": ["qkv", "fc2"]}),
    ("lora-conv", "resnet", {"target_modules": ["conv1", "conv2", "conv3", "downsample.0"], "rank": 2}),
])
def test_closed_forms_hold_beyond_the_defaults(name, family, options):
    base = make_model(family)
    method = create_method(name, options)
    expected = EXPECTED_TRAINABLE[name](base, method.config)
    assert count_parameters(apply_method(base, method))[0] == expected


def test_base_weight_is_renamed_while_injected_and_unload_restores_a_plain_timm_model():
    base = make_model("vit")
    names = set(base.state_dict())
    method = create_method("lora-qkv", {"target_modules": ["qkv", "proj", "fc1", "fc2"]})
    model = apply_method(base, method).eval()
    assert "blocks.0.attn.qkv.base_layer.weight" in model.state_dict()
    perturb(model)
    x = make_inputs("vit")
    with torch.no_grad():
        adapted = model(x)
        plain = method.unload(model)
        torch.testing.assert_close(plain(x), adapted, rtol=1e-5, atol=1e-5)
    assert set(plain.state_dict()) == names
    assert not any(isinstance(m, BaseTunerLayer) for m in plain.modules())
    assert not hasattr(plain, "peft_config")
    fresh = make_model("vit", seed=5)
    fresh.load_state_dict(plain.state_dict(), strict=True)  # the merged weights load into plain timm
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), adapted, rtol=1e-5, atol=1e-5)


def test_merge_and_unmerge_twice_are_silent_no_ops():
    method = create_method("lora-qkv")
    model = apply_method(make_model("vit"), method)
    perturb(model)
    weight = model.blocks[0].attn.qkv.base_layer.weight
    before = weight.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # peft would warn on a second merge; medpeft must not call it
        method.merge(model)
        merged = weight.detach().clone()
        method.merge(model)
        assert torch.equal(weight, merged)
        method.unmerge(model)
        method.unmerge(model)
    torch.testing.assert_close(weight, before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,peft_type,extra", [("lora-qkv", "LORA", {"use_dora": False}),
                                                  ("dora", "LORA", {"use_dora": True}),
                                                  ("ia3", "IA3", {"feedforward_modules": ["fc2"]})])
def test_adapter_config_records_peft_config(name, peft_type, extra, tmp_path):
    method = create_method(name)
    save_adapter(apply_method(make_model("vit"), method), method, tmp_path)
    recorded = read_adapter_config(tmp_path)["peft_config"]
    assert recorded["peft_type"] == peft_type
    assert sorted(recorded["target_modules"]) == sorted(method.config.target_modules)
    for key, value in extra.items():
        assert recorded[key] == value
    if peft_type == "LORA":
        assert recorded["r"] == 8 and recorded["lora_alpha"] == 32


def test_dora_is_identity_at_init_with_magnitude_equal_to_row_norms():
    base = make_model("vit")
    x = make_inputs("vit")
    with torch.no_grad():
        expected = base(x)
    model = apply_method(copy.deepcopy(base), create_method("dora")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
    layer = model.blocks[0].attn.qkv
    magnitude = layer.lora_magnitude_vector["default"].weight
    torch.testing.assert_close(magnitude, layer.base_layer.weight.norm(dim=1))
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0


@pytest.mark.parametrize("name", ["loha", "lokr"])
def test_lycoris_updates_start_at_exactly_zero(name):
    model = apply_method(make_model("vit"), create_method(name))
    for block in model.blocks:
        assert torch.count_nonzero(block.attn.qkv.get_delta_weight("default")) == 0


def test_ia3_vectors_start_at_one_and_scale_qkv_output_and_mlp_hidden():
    model = apply_method(make_model("vit"), create_method("ia3"))
    qkv, fc2 = model.blocks[0].attn.qkv, model.blocks[0].mlp.fc2
    assert qkv.ia3_l["default"].shape == (qkv.out_features, 1)
    assert fc2.ia3_l["default"].shape == (1, fc2.in_features)
    assert torch.all(qkv.ia3_l["default"] == 1) and torch.all(fc2.ia3_l["default"] == 1)


def test_a_second_injection_is_refused():
    model = apply_method(make_model("vit"), create_method("loha"))
    with pytest.raises(ValueError, match="already holds peft layers"):
        apply_method(model, create_method("lora-qkv"))


@pytest.mark.parametrize("name,options,match", [
    ("lora-qkv", {"rank": 0}, "rank"),
    ("dora", {"dropout": 1.0}, "dropout"),
    ("lora-qkv", {"target_modules": "qkv"}, "target_modules: expected a list of text, got 'qkv'"),
    ("ia3", {"feedforward_modules": ["fc1"]}, "must also be in target_modules"),
    ("loha", {"module_dropout": -0.1}, "module_dropout"),
    ("lokr", {"decompose_factor": 0}, "decompose_factor"),
    ("lokr", {"rank": 0}, "LoKr rank"),
])
def test_bad_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_method(name, options)


@pytest.mark.parametrize("family,name,targets", [("vit", "lora-qkv", ["qvk"]),
                                                 ("vit", "ia3", ["patch_embed.proj", "fc2"]),
                                                 ("resnet", "lora-conv", ["conv4"])])
def test_a_target_that_matches_nothing_lists_the_candidates(family, name, targets):
    options = {"target_modules": targets, **({"feedforward_modules": []} if name == "ia3" else {})}
    with pytest.raises(ValueError, match=r"match no module .*candidates: .*(attn.qkv|conv2)"):
        apply_method(make_model(family), create_method(name, options))


def test_vit_targets_stay_inside_the_transformer_blocks():
    model = apply_method(make_model("vit"), create_method("lora-qkv", {"target_modules": ["proj"]}))
    adapted = {name for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
    assert adapted == {f"blocks.{i}.attn.proj" for i in range(len(model.blocks))}  # not patch_embed.proj
