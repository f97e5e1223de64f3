"""Tiny backbones for the method matrix, and the closed-form trainable count of every method.

Each registered method needs an entry in ``EXPECTED_TRAINABLE``: a formula written from the
method's definition (not by counting the model), so a wrong injection shows up as a
mismatch. A method registered without a formula fails ``test_every_method_has_a_formula``.
"""
from __future__ import annotations

import pytest
import torch

from medpeft.methods import METHODS, create_method
from medpeft.models import CLASSIFIER_FAMILIES, BackboneConfig, create_backbone

from . import formulas_custom, formulas_peft_resnet
from .shapes import NUM_OUTPUTS, dims, total_params

TINY = {
    "vit": BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 2}),
    # live residual branches: timm's zero_init_last would zero every bottleneck's bn3 weight and hide
    # whatever conv2 methods (and FiLM/SSF inside the branch) do from the identity and merge checks
    "resnet": BackboneConfig("resnet50", img_size=32, drop_path=0.0, timm_kwargs={"zero_init_last": False}),
}


def _lora(model, cfg):
    k = dims(model)
    return 4 * k["d"] * cfg.rank * k["L"] + k["head"]


# name -> formula(base model before injection, method config) -> trainable parameter count
EXPECTED_TRAINABLE = {
    "fft": lambda model, cfg: total_params(model),
    "linear": lambda model, cfg: dims(model)["head"],
    "lora": _lora,
}
for _more in (formulas_custom.FORMULAS, formulas_peft_resnet.FORMULAS):
    assert not set(_more) & set(EXPECTED_TRAINABLE), "a method has two formulas"
    EXPECTED_TRAINABLE.update(_more)


def method_family_pairs():
    return [pytest.param(name, family, id=f"{name}-{family}")
            for name, cls in METHODS.items() for family in cls.families if family in CLASSIFIER_FAMILIES]


def make_model(family: str, seed: int = 0):
    torch.manual_seed(seed)
    return create_backbone(TINY[family], NUM_OUTPUTS).eval()


def make_inputs(family: str, batch: int = 2, seed: int = 1):
    size = TINY[family].img_size
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def perturb(model):
    """Move every trainable tensor off its initial value, as training would."""
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))


__all__ = ["EXPECTED_TRAINABLE", "METHODS", "create_method", "dims", "make_inputs", "make_model",
           "method_family_pairs", "perturb", "total_params"]
