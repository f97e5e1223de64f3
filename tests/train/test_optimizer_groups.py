"""Optimizer parameter groups: layer-wise lr decay and weight decay, for every method.

``build_optimizer`` hands the model to timm's ``create_optimizer_v2`` (its
``param_groups_layer_decay`` when the model has ``blocks`` and ``layer_decay < 1``). The rule,
as observed and asserted here for a ViT with ``L`` blocks and layer decay ``d``:

- lr scale: the stem (``cls_token``, ``pos_embed``, ``patch_embed.*``) ``d ** (L + 1)``; every
  tensor under ``blocks.<i>.`` ``d ** (L - i)``, including what a method injects there (LoRA
  A/B, adapters, SSF, IA3, DoRA, LoHa/LoKr factors): adapters take the scale of the block they
  sit in; everything else ``1.0``: the head, ``fc_norm``, and tensors outside the blocks that
  timm's group matcher does not know, i.e. **VPT's prompts train at the full lr**, in the
  head's group;
- weight decay: none for 1-D tensors (biases, norm weights, SSF/IA3 scale vectors, DoRA
  magnitudes) and for the tokens: ``cls_token``, ``pos_embed`` and VPT's prompts (which the
  prompted model lists in ``no_weight_decay()``); every other tensor is decayed, adapter
  matrices included;
- ResNets (no ``blocks``) and ``layer_decay = 1`` get no lr scale: every group trains at the
  scheduled lr; the weight-decay split is the same.
Frozen tensors are in no group; each trainable tensor is in exactly one.
"""
from __future__ import annotations

import re

import pytest

from medpeft.methods import METHODS, apply_method, create_method
from medpeft.runtime import TrainConfig
from medpeft.runtime.schedule import set_lr
from medpeft.train import build_optimizer

from ..methods.conftest import make_model

WEIGHT_DECAY, DECAY = 0.05, 0.5
STEM = ("cls_token", "pos_embed", "patch_embed.")
NO_DECAY_TOKENS = ("cls_token", "pos_embed", "vpt_prompts", "vpt_deep_prompts")


def groups_by_name(model, optimizer) -> dict[str, dict]:
    """parameter name -> its group; fails if a tensor is in two groups."""
    names = {id(p): n for n, p in model.named_parameters()}
    found: dict[str, dict] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            assert name not in found, f"{name} is in two groups"
            found[name] = group
    return found


def expected_scale(name: str, depth: int, decay: float = DECAY) -> float:
    """A ViT tensor's layer-decay lr scale: the stem ``decay ** (depth + 1)``, block ``i``
    ``decay ** (depth - i)``, everything else 1.0."""
    if name.startswith(STEM):
        return decay ** (depth + 1)
    block = re.match(r"blocks\.(\d+)\.", name)
    return decay ** (depth - int(block[1])) if block else 1.0


def expected_decay(name: str, param) -> float:
    return 0.0 if param.ndim <= 1 or name in NO_DECAY_TOKENS else WEIGHT_DECAY


def vit_methods():
    return [name for name, cls in METHODS.items() if "vit" in cls.families]


@pytest.mark.parametrize("name", vit_methods())
def test_vit_groups_follow_layer_decay_and_the_decay_rule(name):
    model = apply_method(make_model("vit"), create_method(name))
    optimizer = build_optimizer(model, TrainConfig(layer_decay=DECAY, weight_decay=WEIGHT_DECAY), lr=1.0)
    groups = groups_by_name(model, optimizer)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == set(trainable), "the optimizer must hold exactly the trainable tensors"
    depth = len(model.blocks)
    set_lr(optimizer, 0.2)
    for pname, param in trainable.items():
        group = groups[pname]
        assert group["lr_scale"] == pytest.approx(expected_scale(pname, depth)), pname
        assert group["lr"] == pytest.approx(0.2 * expected_scale(pname, depth)), pname
        assert group["weight_decay"] == expected_decay(pname, param), pname


def test_fft_vit_spans_every_scale_from_the_stem_to_the_head():
    """With 2 blocks and d = 0.5: stem 1/8, block 0 1/4, block 1 1/2, head and fc_norm 1."""
    model = apply_method(make_model("vit"), create_method("fft"))
    groups = groups_by_name(model, build_optimizer(model, TrainConfig(layer_decay=DECAY), lr=1.0))
    scales = {n: g["lr_scale"] for n, g in groups.items()}
    assert scales["pos_embed"] == scales["cls_token"] == scales["patch_embed.proj.weight"] == 0.125
    assert scales["blocks.0.attn.qkv.weight"] == 0.25 and scales["blocks.1.mlp.fc2.bias"] == 0.5
    assert scales["head.weight"] == scales["head.bias"] == scales["fc_norm.weight"] == 1.0
    decays = {n: g["weight_decay"] for n, g in groups.items()}
    assert {n for n, wd in decays.items() if wd > 0} == {
        "patch_embed.proj.weight", "head.weight",
        *(f"blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))}


def test_adapters_take_the_scale_of_their_block_and_decay_only_matrices():
    model = apply_method(make_model("vit"), create_method("adapter"))
    groups = groups_by_name(model, build_optimizer(model, TrainConfig(layer_decay=DECAY), lr=1.0))
    assert groups["blocks.0.mlp_adapter.up.weight"]["lr_scale"] == 0.25
    assert groups["blocks.1.attn_adapter.down.weight"]["lr_scale"] == 0.5
    assert groups["blocks.1.attn_adapter.down.weight"]["weight_decay"] == WEIGHT_DECAY
    assert groups["blocks.1.attn_adapter.down.bias"]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
def test_vpt_prompts_train_at_full_lr_without_weight_decay(name):
    """The rule: prompts are outside the blocks, so timm's group matcher gives them the head's
    lr scale 1.0; they are tokens, so no weight decay (the head's bias group)."""
    model = apply_method(make_model("vit"), create_method(name))
    groups = groups_by_name(model, build_optimizer(model, TrainConfig(layer_decay=DECAY), lr=1.0))
    prompts = [n for n in groups if n.startswith("vpt_")]
    assert prompts == (["vpt_prompts"] if name == "vpt-shallow" else ["vpt_prompts", "vpt_deep_prompts"])
    for prompt in prompts:
        assert groups[prompt] is groups["head.bias"]
        assert groups[prompt]["lr_scale"] == 1.0 and groups[prompt]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["vpt-shallow", "vpt-deep"])
def test_vpt_prompts_are_tokens_and_get_no_weight_decay(name):
    model = apply_method(make_model("vit"), create_method(name))
    groups = groups_by_name(model, build_optimizer(model, TrainConfig(weight_decay=WEIGHT_DECAY), lr=1.0))
    for prompt in [n for n in groups if n.startswith("vpt_")]:
        assert groups[prompt]["weight_decay"] == 0.0, prompt


@pytest.mark.parametrize("family,layer_decay", [("resnet", 0.5), ("vit", 1.0)])
def test_no_layer_decay_for_resnets_or_at_one(family, layer_decay):
    model = apply_method(make_model(family), create_method("fft"))
    optimizer = build_optimizer(model, TrainConfig(layer_decay=layer_decay, weight_decay=WEIGHT_DECAY), lr=1.0)
    groups = groups_by_name(model, optimizer)
    assert set(groups) == {n for n, _ in model.named_parameters()}
    assert all(g.get("lr_scale", 1.0) == 1.0 for g in optimizer.param_groups)
    set_lr(optimizer, 0.3)
    assert all(g["lr"] == 0.3 for g in optimizer.param_groups)
    for pname, param in model.named_parameters():
        assert groups[pname]["weight_decay"] == expected_decay(pname, param), pname


def test_sgd_gets_momentum_and_the_same_groups():
    model = apply_method(make_model("vit"), create_method("lora"))
    optimizer = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8, layer_decay=DECAY), lr=1.0)
    assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)
    groups = groups_by_name(model, optimizer)
    assert groups["blocks.0.attn.qkv.lora_A_q"]["lr_scale"] == 0.25
