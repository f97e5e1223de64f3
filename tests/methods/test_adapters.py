"""Sequential (Houlsby) and parallel (He et al.) adapters: placement, zero start, counts."""
from __future__ import annotations

import copy

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods._bottleneck import Bottleneck, ParallelAdapterBlock, SequentialAdapterBlock
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model, perturb
from .formulas_custom import FORMULAS
from .shapes import NUM_OUTPUTS, dims


@pytest.mark.parametrize("name,adapter_weights", [
    ("adapter", 12 * 2 * (2 * 768 * 64 + 64 + 768)),  # 2,379,264
    ("adapter-parallel", 12 * (2 * 768 * 64 + 64 + 768)),  # 1,189,632
])
def test_vit_base_count(name, adapter_weights):
    with torch.device("meta"):
        model = create_backbone(BackboneConfig("vit_base", img_size=224), NUM_OUTPUTS)
        method = create_method(name)
        head, expected = dims(model)["head"], FORMULAS[name](model, method.config)
        trainable, _ = count_parameters(apply_method(model, method))
    assert trainable == expected
    assert trainable - head == adapter_weights


@pytest.mark.parametrize("name", ["adapter", "adapter-parallel"])
def test_zero_at_init_then_changes_the_output_once_trained(name):
    base = make_model("vit")
    x = make_inputs("vit")
    with torch.no_grad():
        expected = base(x)
    model = apply_method(copy.deepcopy(base), create_method(name)).eval()
    adapters = [m for m in model.modules() if isinstance(m, Bottleneck)]
    assert adapters and all(torch.count_nonzero(a.up.weight) == 0 for a in adapters)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)
        for adapter in adapters:
            adapter.up.weight.normal_(std=0.1)
        assert not torch.allclose(model(x), expected, atol=1e-3)


def test_sequential_adapters_sit_on_the_branch_outputs():
    model = apply_method(make_model("vit"), create_method("adapter")).eval()
    perturb(model)
    block, x = model.blocks[0], torch.randn(2, 17, 192)
    assert type(block) is SequentialAdapterBlock
    with torch.no_grad():
        h = block.attn(block.norm1(x))
        x1 = x + h + block.attn_adapter(h)
        h = block.mlp(block.norm2(x1))
        torch.testing.assert_close(block(x), x1 + h + block.mlp_adapter(h))


def test_parallel_adapter_reads_the_residual_stream_and_is_scaled():
    model = apply_method(make_model("vit"), create_method("adapter-parallel")).eval()
    perturb(model)
    block, x = model.blocks[1], torch.randn(2, 17, 192)
    adapter = block.mlp_adapter
    assert type(block) is ParallelAdapterBlock and adapter.scale == 4.0
    with torch.no_grad():
        x1 = x + block.attn(block.norm1(x))
        branch = 4.0 * adapter.up(adapter.act(adapter.down(x1)))  # input x1, not norm2(x1)
        torch.testing.assert_close(block(x), x1 + block.mlp(block.norm2(x1)) + branch)


def test_only_the_mlp_adapter_and_a_learnable_scale():
    with torch.device("meta"):
        base = create_backbone(BackboneConfig("vit_tiny", img_size=16, patch_size=4, timm_kwargs={"depth": 2}),
                               NUM_OUTPUTS)
        keys = set(base.state_dict())
        mlp_only = create_method("adapter", {"after_attn": False, "bottleneck": 8})
        expected = FORMULAS["adapter"](base, mlp_only.config)
        model = apply_method(base, mlp_only)
    assert model.blocks[0].attn_adapter is None
    assert count_parameters(model)[0] == expected == 2 * (2 * 192 * 8 + 8 + 192) + dims(model)["head"]
    assert {k for k in model.state_dict() if k not in keys} == {
        f"blocks.{i}.mlp_adapter.{layer}.{p}" for i in range(2) for layer in ("down", "up") for p in ("weight", "bias")}
    learnable = apply_method(make_model("vit"),
                             create_method("adapter-parallel", {"learnable_scale": True, "scale": 2.0}))
    scale = learnable.blocks[0].mlp_adapter.scale
    assert isinstance(scale, torch.nn.Parameter) and scale.requires_grad and scale.item() == 2.0


@pytest.mark.parametrize("name,options,match", [
    ("adapter", {"bottleneck": 0}, "bottleneck"), ("adapter", {"activation": "tanh"}, "activation"),
    ("adapter", {"after_attn": False, "after_mlp": False}, "after_attn or after_mlp"),
    ("adapter-parallel", {"dropout": 1.0}, "dropout"), ("adapter-parallel", {"scale": float("inf")}, "scale")])
def test_bad_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_method(name, options)


def test_applying_twice_is_refused():
    model = apply_method(make_model("vit"), create_method("adapter"))
    with pytest.raises(ValueError, match="already applied"):
        apply_method(model, create_method("adapter-parallel"))
