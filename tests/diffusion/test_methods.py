"""Every diffusion method trains only its own parameters (counted against a formula read from the
module types and shapes, not from the name filter), and saves/loads bit-exactly. A method that
registers is covered here at once."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from medpeft.diffusion import DIFFUSION_METHODS, UNetConfig, create_method
from medpeft.diffusion.methods import apply_method, load_adapter, save_adapter
from medpeft.diffusion.unet import build_unet

UNET = UNetConfig(channels=(8, 16), attention=(False, True), norm_groups=4, head_dim=4, timesteps=100)


def fresh_unet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_unet(UNET, 16)


def _modules(unet, kind_names: tuple[str, ...]):
    return [m for m in unet.modules() if type(m).__name__ in kind_names]


def expected_count(name: str, unet: nn.Module, options: dict) -> int:
    """What each method trains, from the model's structure."""
    norms = _modules(unet, ("GroupNorm", "LayerNorm"))
    attentions = _modules(unet, ("Attention",))
    biases = sum(m.bias.numel() for m in unet.modules() if isinstance(getattr(m, "bias", None), nn.Parameter))
    if name == "full":
        return sum(p.numel() for p in unet.parameters())
    if name == "bias":
        return biases
    if name == "norm":
        return sum(m.weight.numel() + m.bias.numel() for m in norms)
    if name == "attn":
        return sum(sum(p.numel() for p in (*a.to_q.parameters(), *a.to_k.parameters(), *a.to_v.parameters(),
                                           *a.to_out[0].parameters())) for a in attentions)
    if name == "lora":
        rank = options.get("rank", 4)
        linears = [l for a in attentions for l in (a.to_q, a.to_k, a.to_v, a.to_out[0])]
        return sum(rank * (l.in_features + l.out_features) for l in linears)
    if name == "difffit":  # biases + norm scales + one gamma per attention and feed-forward branch
        return biases + sum(m.weight.numel() for m in norms) + len(attentions) + len(_modules(unet, ("FeedForward",)))
    raise AssertionError(f"no formula for {name}: add one")


@pytest.mark.parametrize("name", DIFFUSION_METHODS.names())
def test_trains_exactly_its_own_parameters(name):
    options = {"rank": 2} if name == "lora" else {}
    unet = fresh_unet()
    formula = expected_count(name, unet, options)
    unet = apply_method(unet, create_method(name, options))
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert sum(p.numel() for n, p in unet.named_parameters() if n in trainable) == formula
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    optimizer = torch.optim.SGD([p for p in unet.parameters() if p.requires_grad], lr=0.1)
    x, t, text = torch.randn(2, 1, 16, 16), torch.tensor([3, 50]), torch.randn(2, 5, 384)
    unet(x, t, text).sample.pow(2).mean().backward()
    optimizer.step()
    changed = {n for n, p in unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable
    assert changed, f"{name}: a step changed nothing"


@pytest.mark.parametrize("name", DIFFUSION_METHODS.names())
def test_save_and_load_are_bit_exact(name, tmp_path):
    unet = apply_method(fresh_unet(), create_method(name))
    with torch.no_grad():  # a trained adapter: every trainable tensor moved off its initial value
        for p in unet.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter(unet, create_method(name), tmp_path)
    loaded, method = load_adapter(fresh_unet(), tmp_path)
    assert method.name == name
    ours, theirs = unet.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x, t, text = torch.randn(2, 1, 16, 16), torch.tensor([3, 50]), torch.randn(2, 5, 384)
    assert torch.equal(unet(x, t, text).sample, loaded(x, t, text).sample)


def test_adapter_on_another_base_is_refused(tmp_path):
    unet = apply_method(fresh_unet(0), create_method("bias"))
    save_adapter(unet, create_method("bias"), tmp_path)
    with pytest.raises(ValueError, match="base model differs"):
        load_adapter(fresh_unet(1), tmp_path)


def test_unknown_method_and_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="Did you mean 'lora'"):
        create_method("loar")
    with pytest.raises(ValueError, match="rank must be at least 1"):
        create_method("lora", {"rank": 0})
    with pytest.raises(ValueError, match="targets must be some of"):
        create_method("lora", {"targets": ["qkv"]})
