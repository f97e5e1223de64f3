"""Adaptation methods for the diffusion UNet: Dutt et al.'s generative line-up, one small registry.

The classifier registry (:mod:`medpeft.methods`) is built around timm backbones and their heads;
a UNet has neither, so diffusion methods have their own registry with the same conventions: a
config dataclass per method, "trainable" as a name filter over the UNet's parameters, and the
trained part saved as ``adapter_config.json`` + ``adapter_model.safetensors``.

- ``full``: every weight (full fine-tuning; also how the base model is pretrained).
- ``lora``: rank-r updates of the attention projections ``to_q``, ``to_k``, ``to_v``,
  ``to_out.0`` of every self- and cross-attention (Hu et al. 2022), via HF peft's
  ``LoraConfig`` + ``inject_adapter_in_model`` (peft's own layers and initialisation: B = 0,
  so the adapted model starts as the base model).
- ``difffit``: DiffFit (Xie et al. 2023): the bias terms, the normalisation layers and a learnable
  scale factor gamma (a scalar, initialised to 1) on the output of every attention (self and
  cross) and every transformer feed-forward branch. DiffFit was defined on DiT; placing gamma
  on the attention and feed-forward branches of the UNet's transformer blocks follows
  mkshing/DiffFit-pytorch's port to Stable Diffusion (ResNet branches get none). Written here:
  gamma is a parameter registered on the branch module plus a forward hook, so the base
  model's state-dict names do not change.
- ``attn``: attention tuning: every weight and bias of the attention modules (q, k, v, out of
  self- and cross-attention), the rest frozen.
- ``norm``: the GroupNorm and LayerNorm scales and shifts only.
- ``bias``: BitFit (Ben Zaken et al. 2022): every bias term only.

Save and load work by the name filter for every method; loading applies the same method to the
same base first, so the files hold only the trained tensors.
"""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from ..serialization import atomic_save_tensors, atomic_write_text, from_dict, load_json, to_dict
from ..methods._base import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, base_fingerprint, load_adapter_state,
                            mark_trainable, read_adapter_weights)
from ..registry import Registry

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # diffusers' attention projections
GAMMA = "difffit_gamma"


@dataclass
class DiffusionMethodConfig:
    """Base of every diffusion method's config."""


class DiffusionMethod(ABC):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = DiffusionMethodConfig
    summary: ClassVar[str] = ""  # one line for `medpeft diffusion methods`
    paper: ClassVar[str] = ""
    default_lr: ClassVar[float] = 1e-3  # peak learning rate when the run sets none

    def __init__(self, config=None):
        self.config = config if config is not None else self.config_class()

    def inject(self, unet: nn.Module) -> nn.Module:
        """Add the method's own parameters (most methods add none)."""
        return unet

    @abstractmethod
    def trainable_patterns(self, unet: nn.Module) -> list[str]:
        """Regexes (re.search) over parameter names of what trains."""

    def is_trainable(self, unet: nn.Module):
        regex = re.compile("|".join(self.trainable_patterns(unet)) or r"(?!)")
        return lambda name: regex.search(name) is not None


DIFFUSION_METHODS: Registry[type[DiffusionMethod]] = Registry("diffusion method")


def register(cls):
    DIFFUSION_METHODS.add(cls.name, cls)
    return cls


def create_method(name: str, options: dict | None = None) -> DiffusionMethod:
    cls = DIFFUSION_METHODS.get(name)
    return cls(from_dict(cls.config_class, options or {}, where=f"diffusion method {name}"))


def modules_of(unet: nn.Module, kinds: tuple[type, ...]) -> list[str]:
    return [name for name, module in unet.named_modules() if isinstance(module, kinds)]


def _under(names: list[str], leaf: str = r"[^.]+") -> list[str]:
    """Patterns for the direct parameters of the named modules (``leaf`` narrows them)."""
    return [rf"^{re.escape(n)}\.{leaf}$" for n in names]


def _attention_modules(unet: nn.Module) -> list[str]:
    from diffusers.models.attention_processor import Attention

    return modules_of(unet, (Attention,))


def _norm_modules(unet: nn.Module) -> list[str]:
    return modules_of(unet, (nn.GroupNorm, nn.LayerNorm))


@register
class Full(DiffusionMethod):
    name, summary, default_lr = "full", "full fine-tuning: every weight of the UNet", 5e-4
    paper = "Ho et al. 2020 (DDPM); Rombach et al. 2022 (Stable Diffusion)"

    def trainable_patterns(self, unet):
        return [r"."]


@register
class Bias(DiffusionMethod):
    name, summary, default_lr = "bias", "BitFit: every bias term", 3e-3
    paper = "Ben Zaken et al. 2022"

    def trainable_patterns(self, unet):
        return [r"\.bias$"]


@register
class Norm(DiffusionMethod):
    name, summary, default_lr = "norm", "the GroupNorm and LayerNorm scales and shifts", 3e-3
    paper = "norm tuning, as compared by Dutt et al. 2023"

    def trainable_patterns(self, unet):
        return _under(_norm_modules(unet), r"(weight|bias)")


@register
class AttentionTuning(DiffusionMethod):
    name, summary, default_lr = "attn", "attention tuning: q, k, v and out of every self- and cross-attention", 5e-4
    paper = "attention tuning, as compared by Dutt et al. 2023"

    def trainable_patterns(self, unet):
        return [rf"^{re.escape(n)}\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$" for n in _attention_modules(unet)]


@dataclass
class LoRAConfig(DiffusionMethodConfig):
    rank: int = 4  # rank r of each update
    alpha: float | None = None  # scaling numerator (update = B A x * alpha / r); None = rank
    targets: tuple[str, ...] = LORA_TARGETS  # attention projections that get an update

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"lora rank must be at least 1, got {self.rank}")
        self.targets = tuple(self.targets)
        unknown = set(self.targets) - set(LORA_TARGETS)
        if not self.targets or unknown:
            raise ValueError(f"lora targets must be some of {list(LORA_TARGETS)}, got {list(self.targets)}")


@register
class LoRA(DiffusionMethod):
    name, config_class, default_lr = "lora", LoRAConfig, 1e-3
    summary = "LoRA (HF peft) on to_q, to_k, to_v, to_out.0 of every attention"
    paper = "Hu et al. 2022"

    def inject(self, unet):
        from peft import LoraConfig, inject_adapter_in_model

        config = self.config
        peft_config = LoraConfig(r=config.rank, lora_alpha=config.alpha or config.rank,
                                 target_modules=list(config.targets), lora_dropout=0.0, bias="none")
        return inject_adapter_in_model(peft_config, unet)

    def trainable_patterns(self, unet):
        return [r"\.lora_[AB]\."]


def _scale_output(module: nn.Module, inputs, output):
    return output * getattr(module, GAMMA)


@register
class DiffFit(DiffusionMethod):
    name, default_lr = "difffit", 3e-3
    summary = "DiffFit: biases, norms and a scale gamma on every attention and feed-forward branch"
    paper = "Xie et al. 2023"

    def inject(self, unet):
        from diffusers.models.attention import FeedForward

        for name in _attention_modules(unet) + modules_of(unet, (FeedForward,)):
            module = unet.get_submodule(name)
            if not hasattr(module, GAMMA):
                module.register_parameter(GAMMA, nn.Parameter(torch.ones(1)))
                module.register_forward_hook(_scale_output)
        return unet

    def trainable_patterns(self, unet):
        return [r"\.bias$", rf"\.{GAMMA}$"] + _under(_norm_modules(unet), r"(weight|bias)")


# ------------------------------------------------------------------------------ apply, save, load

def apply_method(unet: nn.Module, method: DiffusionMethod) -> nn.Module:
    """Inject the method and leave exactly its parameters trainable."""
    unet = method.inject(unet)
    mark_trainable(unet, method)
    return unet


def adapter_state(unet: nn.Module, method: DiffusionMethod) -> dict[str, torch.Tensor]:
    trainable = method.is_trainable(unet)
    return {name: tensor.detach().clone().contiguous() for name, tensor in unet.state_dict().items()
            if trainable(name)}


def save_adapter(unet: nn.Module, method: DiffusionMethod, directory, extra: dict | None = None) -> None:
    """``adapter_config.json`` + ``adapter_model.safetensors`` (the trained tensors), atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = adapter_state(unet, method)
    config = {"peft_type": method.name.upper(), "medpeft_method": method.name, "kind": "diffusion",
              "method_config": to_dict(method.config), "base_fingerprint": base_fingerprint(unet, state),
              **(extra or {})}
    weights = directory / ADAPTER_WEIGHTS
    atomic_save_tensors(weights, state)
    atomic_write_text(directory / ADAPTER_CONFIG, json.dumps(config, indent=2) + "\n")


def load_adapter(unet: nn.Module, directory) -> tuple[nn.Module, DiffusionMethod]:
    """Apply the saved method to ``unet`` (its base) and load the saved tensors exactly."""
    config = load_json(Path(directory) / ADAPTER_CONFIG, "adapter config")
    if config.get("kind") != "diffusion":
        raise ValueError(f"{directory}: not a diffusion adapter ({ADAPTER_CONFIG} has no kind: diffusion)")
    method = create_method(config["medpeft_method"], config.get("method_config"))
    unet = apply_method(unet, method)
    state = read_adapter_weights(directory)
    missing = sorted(set(adapter_state(unet, method)) - set(state))
    if missing:
        raise ValueError(f"{directory}: the adapter lacks {len(missing)} tensor(s) that {method.name} "
                         f"trains: {missing[:5]}")
    load_adapter_state(unet, state, source=str(directory))
    expected = config.get("base_fingerprint")
    if method.name != "full" and expected is not None and base_fingerprint(unet, state) != expected:
        raise ValueError(f"{directory}: the base model differs from the one the adapter was trained on")
    return unet, method

