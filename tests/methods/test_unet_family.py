"""The UNet family of the one method registry: every method that fits ``unet`` trains only its own
parameters (counted against a formula read from the module types and shapes, not from the name
filter), and saves/loads bit-exactly; the diffusion methods' old names and adapters keep loading;
a method that does not fit a family says so. A method that registers for the UNet is covered here
at once."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import json

from medpeft.diffusion import UNetConfig
from medpeft.diffusion.unet import build_unet
from medpeft.methods import METHODS, apply_method, create_method, load_adapter, methods_for, save_adapter
from medpeft.models import family_of

from .conftest import make_model

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
    if name == "fft":
        return sum(p.numel() for p in unet.parameters())
    if name == "bitfit":
        return biases
    if name == "norm":
        return sum(m.weight.numel() + m.bias.numel() for m in norms)
    if name == "attn":
        return sum(sum(p.numel() for p in (*a.to_q.parameters(), *a.to_k.parameters(), *a.to_v.parameters(),
                                           *a.to_out[0].parameters())) for a in attentions)
    if name == "lora":
        rank = options.get("rank", 4)  # the UNet's default rank
        linears = [l for a in attentions for l in (a.to_q, a.to_k, a.to_v, a.to_out[0])]
        return sum(rank * (l.in_features + l.out_features) for l in linears)
    if name == "difffit":  # biases + norm scales + one gamma per attention and feed-forward branch
        return biases + sum(m.weight.numel() for m in norms) + len(attentions) + len(_modules(unet, ("FeedForward",)))
    raise AssertionError(f"no formula for {name}: add one")


@pytest.mark.parametrize("name", methods_for("unet"))
def test_trains_exactly_its_own_parameters(name):
    options = {"rank": 2} if name == "lora" else {}
    unet = fresh_unet()
    formula = expected_count(name, unet, options)
    unet = apply_method(unet, create_method(name, options, family="unet"))
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


@pytest.mark.parametrize("name", methods_for("unet"))
def test_save_and_load_are_bit_exact(name, tmp_path):
    unet = apply_method(fresh_unet(), create_method(name, family="unet"))
    with torch.no_grad():  # a trained adapter: every trainable tensor moved off its initial value
        for p in unet.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter(unet, create_method(name, family="unet"), tmp_path)
    loaded, method = load_adapter(fresh_unet(), tmp_path)
    assert method.name == name
    ours, theirs = unet.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x, t, text = torch.randn(2, 1, 16, 16), torch.tensor([3, 50]), torch.randn(2, 5, 384)
    assert torch.equal(unet(x, t, text).sample, loaded(x, t, text).sample)


def test_adapter_on_another_base_is_refused(tmp_path):
    unet = apply_method(fresh_unet(0), create_method("bitfit"))
    save_adapter(unet, create_method("bitfit"), tmp_path)
    with pytest.raises(ValueError, match="base weights differ"):
        load_adapter(fresh_unet(1), tmp_path)


def test_the_unet_is_a_family_of_the_one_registry():
    assert family_of(fresh_unet()) == "unet"
    assert set(methods_for("unet")) == {"fft", "bitfit", "norm", "attn", "lora", "difffit"}
    # the methods' UNet defaults: LoRA rank 4, alpha = rank, no dropout (the classifiers': 8, 32, 0.1)
    unet_lora, vit_lora = create_method("lora", family="unet").config, create_method("lora", family="vit").config
    assert (unet_lora.rank, unet_lora.scale_numerator, unet_lora.dropout) == (4, 4.0, 0.0)
    assert (vit_lora.rank, vit_lora.scale_numerator, vit_lora.dropout) == (8, 32.0, 0.1)
    assert create_method("lora", {"rank": 8}, family="unet").config.scale_numerator == 8.0
    assert METHODS.get("difffit").diffusion_lr == 3e-3 and METHODS.get("fft").diffusion_lr == 5e-4


@pytest.mark.parametrize("old, new", [("full", "fft"), ("bias", "bitfit")])
def test_old_diffusion_names_and_adapters_keep_loading(old, new, tmp_path):
    """Runs and study files from before the diffusion methods joined the registry say full or bias."""
    assert create_method(old).name == new and old in METHODS and old not in METHODS.names()
    unet = apply_method(fresh_unet(), create_method(old, family="unet"))
    save_adapter(unet, create_method(old, family="unet"), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config.update({"medpeft_method": old, "peft_type": old.upper(), "kind": "diffusion"})  # as the old code wrote it
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    loaded, method = load_adapter(fresh_unet(), tmp_path)
    assert method.name == new
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), loaded.state_dict().values()))


def test_an_old_unet_lora_adapter_gets_the_unet_defaults(tmp_path):
    """The old diffusion LoRA saved {rank, alpha: null, targets} and no dropout: loading it onto a UNet
    fills in the UNet's defaults (dropout 0), not the ViT's."""
    unet = apply_method(fresh_unet(), create_method("lora", family="unet"))
    save_adapter(unet, create_method("lora", family="unet"), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config["method_config"] = {"rank": 4, "alpha": None, "targets": ["to_q", "to_k", "to_v", "to_out.0"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    _, method = load_adapter(fresh_unet(), tmp_path)
    assert (method.config.rank, method.config.dropout, method.config.scale_numerator) == (4, 0.0, 4.0)


def test_methods_that_do_not_fit_a_family_say_which_do():
    vit = make_model("vit")
    with pytest.raises(ValueError, match="fits vit and resnet backbones, not unet.*Methods for unet: .*difffit"):
        apply_method(fresh_unet(), create_method("ssf"))
    with pytest.raises(ValueError, match="fits unet backbones, not vit"):
        apply_method(vit, create_method("difffit"))
    with pytest.raises(ValueError, match="fits unet backbones, not vit"):
        create_method("norm", family="vit")
    with pytest.raises(ValueError, match="targets choose the UNet's attention projections"):
        create_method("lora", {"targets": ["to_q"]}, family="vit")


def test_unknown_method_and_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="Did you mean 'lora'"):
        create_method("loar")
    with pytest.raises(ValueError, match="rank must be at least 1"):
        create_method("lora", {"rank": 0}, family="unet")
    with pytest.raises(ValueError, match="targets must be some of"):
        create_method("lora", {"targets": ["qkv"]}, family="unet")
