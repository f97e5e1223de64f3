"""LoRA on q,v of the fused qkv: MED-PEFT's semantics, checked number by number."""
from __future__ import annotations

import pytest
import torch

from medpeft.methods import apply_method, count_parameters, create_method
from medpeft.methods.lora import QVLoRALinear
from medpeft.models import BackboneConfig, create_backbone

from .conftest import make_inputs, make_model, perturb


def test_vit_base_count_matches_med_peft():
    """ViT-B/16, r=8 on q and v of 12 blocks: 12 * 2 * (8*768 + 768*8) = 294,912 LoRA weights."""
    with torch.device("meta"):
        model = apply_method(create_backbone(BackboneConfig("vit_base", img_size=224), 14),
                             create_method("lora", {"rank": 8}))
    trainable, total = count_parameters(model)
    assert trainable == 294_912 + (768 * 14 + 14) + 2 * 768
    assert 0.003 < trainable / total < 0.015  # "LoRA trains ~0.3-1.5% of the weights"


def test_b_starts_at_zero_and_key_slice_is_never_adapted():
    model = apply_method(make_model("vit"), create_method("lora", {"rank": 4, "alpha": 8}))
    layer = model.blocks[0].attn.qkv
    assert isinstance(layer, QVLoRALinear)
    assert torch.count_nonzero(layer.lora_B_q) == 0 and torch.count_nonzero(layer.lora_B_v) == 0
    assert layer.scaling == 2.0
    perturb(model)
    delta = layer.delta_weight()
    d = layer.in_features
    assert torch.count_nonzero(delta[d:2 * d]) == 0  # key rows
    assert torch.count_nonzero(delta[:d]) > 0 and torch.count_nonzero(delta[2 * d:]) > 0
    expected_q = layer.lora_B_q @ layer.lora_A_q * layer.scaling
    torch.testing.assert_close(delta[:d], expected_q)


def test_merge_adds_exactly_the_delta_once():
    model = apply_method(make_model("vit"), create_method("lora"))
    perturb(model)
    layer = model.blocks[1].attn.qkv
    before = layer.weight.detach().clone()
    delta = layer.delta_weight().detach()
    method = create_method("lora")
    method.merge(model)
    method.merge(model)
    torch.testing.assert_close(layer.weight, before + delta)
    method.unmerge(model)
    torch.testing.assert_close(layer.weight, before, rtol=0, atol=1e-6)


def test_base_weight_names_are_unchanged_by_injection():
    base = make_model("vit")
    names = set(base.state_dict())
    model = apply_method(base, create_method("lora"))
    assert names <= set(model.state_dict())


def test_dropout_only_in_training_mode():
    model = apply_method(make_model("vit"), create_method("lora", {"dropout": 0.5}))
    perturb(model)
    x = make_inputs("vit")
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("options,match", [({"rank": 0}, "rank"), ({"dropout": 1.0}, "dropout"),
                                            ({"bottleneck": 8}, "unknown option")])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        create_method("lora", options)


def test_lora_on_resnet_is_refused_with_the_families_it_fits():
    with pytest.raises(ValueError, match="fits vit and unet backbones, not resnet"):
        apply_method(make_model("resnet"), create_method("lora"))


# --- the written-out forward and backward (lora_function.py) against the reference formula -------

def _layer(seed: int = 0, dropout: float = 0.0, d: int = 12, rank: int = 3, dtype=torch.float32):
    torch.manual_seed(seed)
    base = torch.nn.Linear(d, 3 * d).to(dtype)
    layer = QVLoRALinear(base, rank, alpha=6.0, dropout=dropout)
    with torch.no_grad():  # B away from zero, as after training
        layer.lora_B_q.normal_(std=0.3)
        layer.lora_B_v.normal_(std=0.3)
    base.weight.requires_grad_(False)
    base.bias.requires_grad_(False)
    return layer


def _grads(layer, forward, x):
    x = x.clone().requires_grad_(True)
    out = forward(x)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    layer.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


@pytest.mark.parametrize("frozen_base", [True, False], ids=["frozen-qkv", "trainable-qkv"])
def test_forward_and_backward_equal_the_reference_formula(frozen_base):
    layer = _layer().train()
    layer.weight.requires_grad_(not frozen_base)
    layer.bias.requires_grad_(not frozen_base)
    x = torch.randn(2, 5, 12)
    ours = _grads(layer, layer.forward, x)
    reference = _grads(layer, layer.reference_forward, x)
    torch.testing.assert_close(ours[0], reference[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], reference[1], rtol=1e-5, atol=1e-6)
    assert set(ours[2]) == set(reference[2]) == ({"lora_A_q", "lora_B_q", "lora_A_v", "lora_B_v"}
                                                 | (set() if frozen_base else {"weight", "bias"}))
    for name in ours[2]:
        torch.testing.assert_close(ours[2][name], reference[2][name], rtol=1e-5, atol=1e-6)


def test_dropout_drops_the_sampled_positions_in_both_passes():
    """With a given drop set the function is the reference formula on ``x * mask / keep``: checked by
    gradcheck in float64 against finite differences, and against the formula itself."""
    from medpeft.methods._lora_function import QVLoRAFunction, dropped_positions

    layer = _layer(dropout=0.3, d=6, rank=2, dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    drop = dropped_positions(x.numel(), 0.3, x.device)
    params = (layer.weight, layer.bias, layer.lora_A_q, layer.lora_B_q, layer.lora_A_v, layer.lora_B_v)
    assert torch.autograd.gradcheck(lambda x, *p: QVLoRAFunction.apply(x, *p, layer.scaling, drop, 0.7),
                                    (x, *params))
    mask = torch.ones(x.numel(), dtype=torch.float64).index_fill_(0, drop, 0.0).view_as(x) / 0.7
    h = x * mask
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    expected[:, :6] += layer.scaling * h @ layer.lora_A_q.t() @ layer.lora_B_q.t()
    expected[:, 12:] += layer.scaling * h @ layer.lora_A_v.t() @ layer.lora_B_v.t()
    torch.testing.assert_close(QVLoRAFunction.apply(x, *params, layer.scaling, drop, 0.7), expected)


@pytest.mark.parametrize("p", [0.02, 0.1, 0.5, 0.9])
def test_sampled_dropout_positions_are_bernoulli(p):
    """Each element is dropped with probability p, independently: the count is Binomial(n, p), the
    positions are distinct, in range and sorted, and neighbours are dropped together as often as
    independence says (p^2)."""
    from medpeft.methods._lora_function import dropped_positions

    torch.manual_seed(0)
    n = 200_000
    drop = dropped_positions(n, p, torch.device("cpu"))
    assert drop.dtype == torch.int64 and int(drop.min()) >= 0 and int(drop.max()) < n
    assert bool((drop[1:] > drop[:-1]).all())
    sigma = (n * p * (1 - p)) ** 0.5
    assert abs(len(drop) - n * p) < 5 * sigma
    mask = torch.zeros(n, dtype=torch.bool)
    mask[drop] = True
    pairs = (mask[1:] & mask[:-1]).sum().item()
    assert abs(pairs - (n - 1) * p * p) < 5 * ((n - 1) * p * p * (1 - p * p)) ** 0.5 + 5
    torch.manual_seed(0)
    assert torch.equal(dropped_positions(n, p, torch.device("cpu")), drop)  # seeded


def test_training_dropout_changes_the_output_and_keeps_it_unbiased():
    layer = _layer(dropout=0.5).train()
    x = torch.randn(64, 12)
    torch.manual_seed(3)
    outs = torch.stack([layer(x).detach() for _ in range(400)])
    assert not torch.equal(outs[0], outs[1])
    torch.testing.assert_close(outs.mean(0), layer.eval()(x).detach(), rtol=0, atol=0.15)


def test_autocast_runs_the_update_in_its_dtype_and_trains_fp32_weights():
    layer = _layer().train()
    x = torch.randn(3, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer.reference_forward(x).detach(), rtol=0.05, atol=0.05)
    out.float().sum().backward()
    assert layer.lora_A_q.grad is not None and layer.lora_A_q.grad.dtype == torch.float32
