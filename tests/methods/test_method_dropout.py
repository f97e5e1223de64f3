"""Every dropout option of every method acts in training mode, and only there.

The method tests checked that eval mode is deterministic, which a dropout that is never
applied also satisfies. Here each config field whose name contains ``dropout`` is set to 0.5
on its own (all others at 0): in training mode two forward passes of the same batch must
differ, in eval mode they must be equal; with every dropout at 0 (the tiny backbones have no
stochastic depth) training-mode passes are equal, so the difference is that option's doing.
Weights are perturbed first, so zero-initialised updates do not hide a dropped input.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from medpeft.methods import METHODS, apply_method, create_method
from medpeft.models import CLASSIFIER_FAMILIES

from .conftest import make_inputs, make_model, perturb


def dropout_fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(METHODS.get(name).config_class) if "dropout" in f.name]


def dropout_cases():
    return [pytest.param(name, family, field, id=f"{name}-{family}-{field}")
            for name, cls in METHODS.items() for family in cls.families if family in CLASSIFIER_FAMILIES for field in dropout_fields(name)]


def two_passes(name: str, family: str, options: dict, train: bool):
    model = apply_method(make_model(family), create_method(name, options)).train(train)
    perturb(model)
    x = make_inputs(family, batch=4)
    torch.manual_seed(0)
    with torch.no_grad():
        return model(x), model(x)


def test_the_methods_with_dropout_options_are_the_expected_ones():
    """A method that gains or loses a dropout option shows up here (and in the cases below)."""
    assert {name for name in METHODS.names() if dropout_fields(name)} == {
        "adapter", "adapter-parallel", "adaptformer", "lora", "lora-qkv", "dora", "lora-conv",
        "loha", "lokr", "vpt-shallow", "vpt-deep"}


@pytest.mark.parametrize("name,family,field", dropout_cases())
def test_dropout_changes_training_passes_and_not_eval_passes(name, family, field):
    off = {f: 0.0 for f in dropout_fields(name)}
    first, second = two_passes(name, family, off, train=True)
    assert torch.equal(first, second), "training passes differ even with every dropout off"
    on = {**off, field: 0.5}
    first, second = two_passes(name, family, on, train=True)
    assert not torch.equal(first, second), f"{name} {field}=0.5 does not act in training mode"
    first, second = two_passes(name, family, on, train=False)
    assert torch.equal(first, second), f"{name} {field}=0.5 acts in eval mode"
