"""The method contract: every PEFT method is a config dataclass plus a :class:`Method` subclass.

One contract and one registry for every backbone family: the classifiers (timm ViT, ResNet) and
the diffusion UNet (diffusers' ``UNet2DConditionModel``, family ``unet``). A method lists the
families it fits; a method that fits several (``fft``, ``bitfit``, ``attn``, ``lora``) chooses its
layers by family, and may declare per-family option defaults (``family_defaults``) and a
per-family default learning rate for diffusion runs (``diffusion_lr``).

A method (HF peft's tuner pattern, without its multi-adapter machinery):
- ``inject(model)`` adds its modules/parameters (nothing for selection methods like BitFit),
- ``trainable_patterns(model)`` are regexes over parameter names; the task head (classifier,
  and ``fc_norm`` for ViTs; a UNet has none) always trains as well,
- mergeable methods implement ``merge``/``unmerge`` (in place, idempotent) and ``unload``
  (merge, then return a plain timm model with no method modules left).

Because "trainable" is a name filter, counting, saving and loading are written once, here,
for every method: :func:`apply_method`, :func:`count_parameters`, :func:`adapter_state_dict`,
:func:`save_adapter`, :func:`load_adapter`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn
from safetensors.torch import load_file

from ..models.backbones import closed_residual_branches, family_of, head_names
from ..registry import Registry
from ..serialization import (
    atomic_save_tensors,
    atomic_write_text,
    dumps_json,
    from_dict,
    load_json,
    to_dict,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Buffers that change while training (BatchNorm statistics) belong to the adapted state.
RUNNING_STAT_BUFFERS = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")


@dataclass
class MethodConfig:
    """Base of every method's config; subclasses add fields with a comment each."""

    def to_dict(self) -> dict:
        return to_dict(self)


class Method(ABC):
    """One PEFT method bound to its config. Subclasses set the class attributes."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    families: ClassVar[tuple[str, ...]] = ("vit", "resnet")  # backbones it fits
    mergeable: ClassVar[bool] = False
    #: whether the adapted model computes exactly the base model's function before training
    #: (zero-initialised updates); prompt methods like VPT change it from the start
    identity_at_init: ClassVar[bool] = True
    summary: ClassVar[str] = ""  # one line for `medpeft methods`
    paper: ClassVar[str] = ""  # the method's reference
    #: base learning rate used when the run sets neither --blr nor --lr (lr = blr * batch / 256);
    #: PEFT methods train few, freshly initialised weights and usually want more than FFT.
    default_blr: ClassVar[float] = 4e-3
    #: peak learning rate of a diffusion (UNet) run that sets none; only for methods that fit ``unet``
    diffusion_lr: ClassVar[float | None] = None
    #: option defaults that differ by family, e.g. LoRA's rank on the UNet: {"unet": {"rank": 4}}
    family_defaults: ClassVar[dict[str, dict]] = {}
    #: what trains, by family, when it differs from ``summary`` (one line for `medpeft methods`)
    family_summary: ClassVar[dict[str, str]] = {}

    def __init__(self, config: MethodConfig | None = None):
        config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def inject(self, model: nn.Module) -> nn.Module:
        """Add the method's modules; selection methods add nothing."""
        return model

    @abstractmethod
    def trainable_patterns(self, model: nn.Module) -> list[str]:
        """Regexes (re.search) over parameter names of what trains besides the head."""

    # Mergeable methods override these three.
    def merge(self, model: nn.Module) -> None:
        raise NotImplementedError(f"{self.name} cannot be merged into the base weights")

    def unmerge(self, model: nn.Module) -> None:
        raise NotImplementedError(f"{self.name} cannot be merged into the base weights")

    def unload(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError(f"{self.name} cannot be merged into the base weights")

    def check_family(self, family: str) -> None:
        """Fail early (when a config is built) on options that this family cannot take."""

    @classmethod
    def summary_for(cls, family: str) -> str:
        return cls.family_summary.get(family, cls.summary)

    def adapter_metadata(self) -> dict:
        """Extra fields for adapter_config.json (peft-backed methods add peft's own config)."""
        return {}

    def is_trainable(self, model: nn.Module):
        """The name filter: a function ``name -> bool`` for this model."""
        patterns = [f"^(?:{re.escape(h)}\\.)" for h in head_names(model)] + self.trainable_patterns(model)
        regex = re.compile("|".join(patterns) or r"(?!)")  # no pattern: nothing trains
        return lambda name: regex.search(name) is not None


METHODS: Registry[type[Method]] = Registry("method")


class SelectionMethod(Method):
    """A method that only chooses which of the model's own tensors train (BitFit, LayerNorm
    and attention tuning, partial-k): nothing is injected, so merging is a no-op and
    ``unload`` returns the model as it is."""

    mergeable = True

    def merge(self, model: nn.Module) -> None:
        pass

    def unmerge(self, model: nn.Module) -> None:
        pass

    def unload(self, model: nn.Module) -> nn.Module:
        return model


class WrapperMethod(Method):
    """A method that wraps layers in modules of ``layer_types``, each with its own exact
    ``merge()``/``unmerge()`` (LoRA, SSF, FiLM, TSA): merging the method merges every wrapper.
    Subclasses still write ``unload``, which differs in what replaces the wrappers."""

    mergeable = True
    layer_types: ClassVar[tuple[type[nn.Module], ...]] = ()

    def layers(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in model.modules() if isinstance(m, self.layer_types)]

    def merge(self, model: nn.Module) -> None:
        for layer in self.layers(model):
            layer.merge()

    def unmerge(self, model: nn.Module) -> None:
        for layer in self.layers(model):
            layer.unmerge()


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: registers ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    METHODS.add(cls.name, cls)
    return cls


# Names the diffusion methods had before they joined this registry: old runs, adapters and
# study files that say ``full`` or ``bias`` keep loading (docs/architecture.md, "Methods").
METHODS.alias("full", "fft")
METHODS.alias("bias", "bitfit")


def methods_for(*families: str) -> list[str]:
    """Names of the methods that fit any of ``families``, in registry order."""
    return [name for name, cls in METHODS.items() if set(cls.families) & set(families)]


def method_config(name: str, options: dict | MethodConfig | None = None, family: str | None = None) -> MethodConfig:
    """``name``'s typed config from ``options`` over its defaults (the family's, when it has its own)."""
    cls = METHODS.get(name)
    if isinstance(options, MethodConfig):
        if not isinstance(options, cls.config_class):
            raise ValueError(f"method {name} takes a {cls.config_class.__name__}, got {type(options).__name__}")
        config = options
    else:
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"method {name}: options must be a mapping such as {{rank: 8}}, got {options!r}")
        values = {**cls.family_defaults.get(family, {}), **(options or {})}
        config = from_dict(cls.config_class, values, where=f"method {name}")
    if family is not None:
        check_family_fits(cls, family)
        cls(config).check_family(family)
    return config


def create_method(name: str, options: dict | MethodConfig | None = None, family: str | None = None) -> Method:
    """A method by name with its config built (and validated) from ``options``; with ``family``,
    over that family's defaults and checked to fit it."""
    return METHODS.get(name)(method_config(name, options, family))


def check_family_fits(cls: type[Method], *families: str, model: str = "") -> None:
    """The method fits one of ``families``; else a ValueError naming the families it fits and the
    methods that fit (``model``: the model's class, named in the message)."""
    if not set(cls.families) & set(families):
        wanted = " or ".join(families)
        raise ValueError(f"method {cls.name!r} fits {' and '.join(cls.families)} backbones, not {wanted}"
                         f"{f' ({model})' if model else ''}. Methods for {wanted}: {', '.join(methods_for(*families))}")


def check_fits(method: Method, model: nn.Module) -> None:
    family = family_of(model)
    check_family_fits(type(method), family, model=type(model).__name__)
    method.check_family(family)


def mark_trainable(model: nn.Module, method) -> None:
    """Leave exactly the parameters that ``method.is_trainable(model)`` names trainable."""
    trainable = method.is_trainable(model)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))
    if not any(p.requires_grad for p in model.parameters()):
        raise AssertionError(f"{method.name} left no trainable parameters")


def apply_method(model: nn.Module, method: Method) -> nn.Module:
    """Inject the method and leave exactly its parameters (and the head) trainable."""
    check_fits(method, model)
    model = method.inject(model)
    mark_trainable(model, method)
    warn_if_branches_stay_closed(model, method)
    return model


def warn_if_branches_stay_closed(model: nn.Module, method: Method) -> None:
    """A frozen zero BatchNorm weight closes a residual branch for good: say so, with the fix."""
    closed = [name for name, norm in closed_residual_branches(model).items() if not norm.weight.requires_grad]
    if closed:
        warnings.warn(f"{method.name}: {len(closed)} residual branches of this ResNet are closed (their last "
                      "BatchNorm weight is 0, timm's zero_init_last on a randomly initialised model) and stay "
                      f"closed, as {method.name} does not train that weight: nothing inside them gets a gradient "
                      "or changes the output. Load pretrained weights (--checkpoint) or build the backbone with "
                      "timm_kwargs {zero_init_last: false}.", stacklevel=3)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; total includes the method's own parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def describe_trainable(model: nn.Module) -> str:
    trainable, total = count_parameters(model)
    return f"trainable: {trainable:,} ({100.0 * trainable / total:.2f}% of {total:,})"


def adapter_state_dict(model: nn.Module, method: Method) -> dict[str, torch.Tensor]:
    """What training changed: the trainable parameters plus BatchNorm running statistics."""
    trainable = method.is_trainable(model)
    state = {}
    for name, tensor in model.state_dict(keep_vars=False).items():
        if trainable(name) or RUNNING_STAT_BUFFERS.search(name):
            state[name] = tensor.detach().clone().contiguous()
    return state


def base_fingerprint(model: nn.Module, adapter_keys) -> str:
    """sha256 of every tensor the adapter does not hold: identifies the frozen base weights."""
    digest = hashlib.sha256()
    skip = set(adapter_keys)
    for name, tensor in sorted(model.state_dict().items()):
        if name not in skip:
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_adapter(model: nn.Module, method: Method, directory: str | Path, extra: dict | None = None) -> None:
    """HF-peft-style files: ``adapter_config.json`` + ``adapter_model.safetensors``.

    Tensor names are the model's own parameter names, so a file can be inspected with
    ``safetensors`` and loaded with :func:`load_adapter` onto the same backbone.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = adapter_state_dict(model, method)
    config = {"peft_type": method.name.upper().replace("-", "_"), "medpeft_method": method.name,
              "method_config": method.config.to_dict(), **method.adapter_metadata(),
              "base_fingerprint": base_fingerprint(model, state), **(extra or {})}
    weights = directory / ADAPTER_WEIGHTS
    atomic_save_tensors(weights, state)
    atomic_write_text(directory / ADAPTER_CONFIG, dumps_json(config, indent=2) + "\n")


def read_adapter_config(directory: str | Path) -> dict:
    path = Path(directory) / ADAPTER_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_CONFIG} in {directory}")
    config = load_json(path, "adapter config")
    if not isinstance(config.get("medpeft_method"), str):
        raise ValueError(f"{path}: not a medpeft adapter config (no 'medpeft_method')")
    return config


def read_adapter_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The adapter's tensors; a missing, truncated or garbage file is an error naming it."""
    path = Path(directory) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"no {ADAPTER_WEIGHTS} in {directory}")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types (SafetensorError, ...)
        raise ValueError(f"{path}: not a readable safetensors file ({err}); it is truncated or "
                         "corrupt — re-run the training or restore the file") from None


def load_adapter(model: nn.Module, directory: str | Path) -> tuple[nn.Module, Method]:
    """Apply the saved method to ``model`` (the same backbone) and load its tensors exactly."""
    config = read_adapter_config(directory)
    method = create_method(config["medpeft_method"], config.get("method_config"), family_of(model))
    state = read_adapter_weights(directory)
    model = apply_method(model, method)
    missing = sorted(set(adapter_state_dict(model, method)) - set(state))
    if missing:
        raise ValueError(f"{Path(directory) / ADAPTER_WEIGHTS}: the adapter lacks {len(missing)} tensor(s) "
                         f"that {method.name} trains: {missing[:5]}")
    load_adapter_state(model, state, source=str(directory))
    expected = config.get("base_fingerprint")
    if expected is not None and base_fingerprint(model, state) != expected:
        raise ValueError(f"{directory}: the base weights differ from those the adapter was trained on "
                         "(another checkpoint file, or a random backbone initialised differently, "
                         "e.g. by another seed or torch version)")
    return model, method


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor], source: str = "adapter") -> None:
    """Copy adapter tensors into ``model``; every tensor must find its place with its shape."""
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{source}: tensors that this model does not have: {unknown[:5]} "
                         "(was it saved from a different backbone or method config?)")
    for key, tensor in state.items():
        if own[key].shape != tensor.shape:
            raise ValueError(f"{source}: {key} has shape {tuple(tensor.shape)}, the model "
                             f"expects {tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)


def config_fields(cls: type[MethodConfig]) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]
