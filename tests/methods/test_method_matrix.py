"""Every registered method on every backbone family it fits, with tiny models.

Counts against closed forms, identity at initialisation, gradients only where intended,
adapter save/load bit-exact, and merge exactness/idempotence for mergeable methods.
"""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from medpeft.methods import (METHODS, adapter_state_dict, apply_method, count_parameters, create_method,
                             load_adapter, save_adapter)
from medpeft.methods._base import ADAPTER_CONFIG, ADAPTER_WEIGHTS

from .conftest import EXPECTED_TRAINABLE, make_inputs, make_model, method_family_pairs, perturb

PAIRS = method_family_pairs()


def test_every_method_has_a_formula():
    assert {n for n, c in METHODS.items() if set(c.families) - {"unet"}} <= set(EXPECTED_TRAINABLE), "add the closed form to tests/methods/conftest.py"


@pytest.mark.parametrize("name,family", PAIRS)
def test_trainable_count_matches_closed_form(name, family):
    base = make_model(family)
    method = create_method(name)
    expected = EXPECTED_TRAINABLE[name](base, method.config)
    model = apply_method(base, method)
    trainable, total = count_parameters(model)
    assert trainable == expected
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert total >= trainable


@pytest.mark.parametrize("name,family", PAIRS)
def test_identity_at_initialisation(name, family):
    method_class = METHODS.get(name)
    if not method_class.identity_at_init:
        pytest.skip(f"{name} changes the function from the start by design")
    base = make_model(family)
    x = make_inputs(family)
    with torch.no_grad():
        expected = base(x)
    model = apply_method(copy.deepcopy(base), create_method(name)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,family", PAIRS)
def test_gradients_reach_only_the_trainable_set(name, family):
    model = apply_method(make_model(family), create_method(name)).train()
    model(make_inputs(family, batch=4)).square().mean().backward()
    for pname, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{pname} is trainable but got no gradient"
        else:
            assert param.grad is None, f"{pname} is frozen but got a gradient"
    head_grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
    assert any(g.abs().sum() > 0 for g in head_grads)


@pytest.mark.parametrize("name,family", PAIRS)
def test_adapter_save_load_round_trip_is_bit_exact(name, family, tmp_path):
    method = create_method(name)
    model = apply_method(make_model(family, seed=0), method)
    perturb(model)
    save_adapter(model, method, tmp_path)
    assert (tmp_path / ADAPTER_CONFIG).is_file() and (tmp_path / ADAPTER_WEIGHTS).is_file()
    saved = load_file(str(tmp_path / ADAPTER_WEIGHTS))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable <= set(saved)

    restored, restored_method = load_adapter(make_model(family, seed=0), tmp_path)
    assert restored_method.config == method.config
    restored_state = restored.state_dict()
    for key, tensor in adapter_state_dict(model, method).items():
        assert torch.equal(restored_state[key], tensor), key
    x = make_inputs(family)
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))


@pytest.mark.parametrize("name,family", [p for p in PAIRS if METHODS.get(p.values[0]).mergeable])
def test_merge_is_exact_idempotent_and_unloads_to_a_plain_model(name, family):
    method = create_method(name)
    model = apply_method(make_model(family), method).eval()
    perturb(model)
    x = make_inputs(family)
    with torch.no_grad():
        adapted = model(x)
        method.merge(model)
        method.merge(model)  # a second merge must not add the update twice
        torch.testing.assert_close(model(x), adapted, rtol=1e-5, atol=1e-5)
        method.unmerge(model)
        method.unmerge(model)
        torch.testing.assert_close(model(x), adapted, rtol=1e-5, atol=1e-5)
        plain = method.unload(model)
        torch.testing.assert_close(plain(x), adapted, rtol=1e-5, atol=1e-5)
    reference = make_model(family)
    assert set(plain.state_dict()) == set(reference.state_dict()), "unload must leave a plain timm model"
    assert type(plain.blocks[0].attn.qkv if family == "vit" else plain.fc) is torch.nn.Linear


def misfit_pairs():
    """Every (method, family) where the method does not fit the backbone family."""
    return [pytest.param(name, family, id=f"{name}-on-{family}")
            for name, cls in METHODS.items() for family in ("vit", "resnet") if family not in cls.families]


@pytest.mark.parametrize("name,family", misfit_pairs())
def test_a_method_on_a_backbone_it_does_not_fit_is_refused_naming_the_families_it_fits(name, family):
    fits = " and ".join(METHODS.get(name).families)
    with pytest.raises(ValueError, match=rf"{name!r} fits {fits} backbones, not {family}.*Methods for {family}: "):
        apply_method(make_model(family), create_method(name))
