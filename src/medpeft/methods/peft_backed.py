"""Methods implemented by HF peft: LoRA on whole modules, DoRA, (IA)^3, LoHa, LoKr, conv LoRA.

HF peft already implements these tuners (layers, initialisation, merge and unmerge) and is
tested upstream, so medpeft wraps them instead of rewriting them. ``peft.inject_adapter_in_model``
swaps the targeted timm modules for peft's tuner layers in place: the model stays a timm model
with its own ``forward_features``/``forward_head``, and no ``PeftModel`` wrapper is involved.

What medpeft adds is its one method interface (base.py):
- trainable = peft's parameter-name prefix (``lora_``, ``ia3_``, ``hada_``, ``lokr_``) + the head;
- ``merge``/``unmerge`` call every ``BaseTunerLayer``'s own merge/unmerge, guarded by
  ``layer.merged`` so a second call is a no-op (peft would warn and skip);
- ``unload`` merges, then puts each tuner layer's ``get_base_layer()`` back, so a plain timm
  model with the original state-dict keys remains;
- ``adapter_config.json`` records peft's own config under ``"peft_config"``.

``target_modules`` are peft's name suffixes. For ViTs they name modules inside the transformer
blocks (``qkv``, ``proj``, ``fc1``, ``fc2``); everything outside ``blocks.<i>.`` is excluded, as
``proj`` would otherwise also match the patch embedding's conv (``patch_embed.proj``).

While injected, peft renames a wrapped module's tensors (``blocks.0.attn.qkv.weight`` becomes
``blocks.0.attn.qkv.base_layer.weight``): load pretrained weights *before* applying the method.
Adapters round-trip because loading applies the same method first; ``unload`` restores the names.
"""
from __future__ import annotations

import json
import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch.nn as nn
from peft import IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

from ._base import Method, MethodConfig, register_method

ADAPTER_NAME = "default"  # peft's adapter name; medpeft keeps one adapter per model
VIT_BLOCKS_ONLY = r"(?!blocks\.\d+\.).*"  # peft exclude_modules regex (full match): names outside the blocks


def check_targets(method: str, targets: tuple[str, ...]) -> None:
    """``target_modules`` must be a non-empty list of module names (a bare string would be a regex to peft)."""
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"{method} target_modules must be a non-empty list of module names such as "
                         f"[qkv, proj], got {targets!r}")


def check_rank_and_dropout(method: str, rank: int, **dropouts: float) -> None:
    if rank < 1:
        raise ValueError(f"{method} rank must be at least 1, got {rank}")
    for field, value in dropouts.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{method} {field} must be in [0, 1), got {value}")


def tuner_layers(model: nn.Module) -> list[tuple[str, BaseTunerLayer]]:
    """(name, layer) of every outermost peft tuner layer in ``model``."""
    found: list[tuple[str, BaseTunerLayer]] = []
    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) and not any(name.startswith(f"{outer}.") for outer, _ in found):
            found.append((name, module))
    return found


def jsonable(config: PeftConfig) -> dict:
    """peft's ``to_dict()`` with sets as sorted lists, so it can go into adapter_config.json."""
    def default(value):
        return sorted(value) if isinstance(value, (set, frozenset)) else str(value)

    return json.loads(json.dumps(config.to_dict(), default=default))


class PeftBackedMethod(Method):
    """A medpeft method whose layers come from one HF peft tuner."""

    mergeable = True
    prefix: ClassVar[str] = ""  # peft's parameter-name prefix for this tuner's weights
    exclude_modules: ClassVar[str | None] = VIT_BLOCKS_ONLY  # modules never adapted (peft regex)

    @abstractmethod
    def peft_config(self) -> PeftConfig:
        """The peft config equivalent to ``self.config``."""

    def targets(self) -> dict:
        """peft's ``target_modules`` and ``exclude_modules`` for this config."""
        return {"target_modules": list(self.config.target_modules), "exclude_modules": self.exclude_modules}

    def inject(self, model: nn.Module) -> nn.Module:
        if tuner_layers(model):
            raise ValueError(f"{self.name}: the model already holds peft layers; "
                             "apply one method to a fresh backbone")
        self.check_targets_exist(model)
        return inject_adapter_in_model(self.peft_config(), model, adapter_name=ADAPTER_NAME)

    def check_targets_exist(self, model: nn.Module) -> None:
        """Every target must name a module peft may adapt (peft's own error names no candidates)."""
        in_scope = [(name, module) for name, module in model.named_modules()
                    if name and not (self.exclude_modules and re.fullmatch(self.exclude_modules, name))]
        missing = [t for t in self.config.target_modules
                   if not any(name == t or name.endswith(f".{t}") for name, _ in in_scope)]
        if missing:
            layers = {re.sub(r"^(blocks|layer\d)\.\d+\.", "", name) for name, module in in_scope
                      if isinstance(module, (nn.Linear, nn.Conv2d))}
            raise ValueError(f"{self.name}: target_modules {missing} match no module of this "
                             f"{type(model).__name__}; candidates: {', '.join(sorted(layers))}")

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"\." + re.escape(self.prefix)]  # e.g. qkv.lora_A.default.weight, qkv.lora_magnitude_vector...

    def merge(self, model: nn.Module) -> None:
        for _, layer in tuner_layers(model):
            if not layer.merged:
                layer.merge(adapter_names=[ADAPTER_NAME])

    def unmerge(self, model: nn.Module) -> None:
        for _, layer in tuner_layers(model):
            if layer.merged:
                layer.unmerge()

    def unload(self, model: nn.Module) -> nn.Module:
        self.merge(model)
        for name, layer in tuner_layers(model):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.get_base_layer())
        if hasattr(model, "peft_config"):  # set by inject_adapter_in_model
            del model.peft_config
        return model

    def adapter_metadata(self) -> dict:
        return {"peft_config": jsonable(self.peft_config())}


# --- LoRA family -------------------------------------------------------------------------------


@dataclass
class PeftLoRAConfig(MethodConfig):
    rank: int = 8  # r: rank of each update
    alpha: float = 32.0  # scaling numerator: updates are scaled by alpha / rank (as lora.py)
    dropout: float = 0.1  # dropout on the LoRA branch input (as lora.py)
    target_modules: tuple[str, ...] = ("qkv",)  # module names peft adapts; e.g. add proj, fc1, fc2

    def __post_init__(self):
        check_rank_and_dropout("LoRA", self.rank, dropout=self.dropout)
        check_targets("LoRA", self.target_modules)


@register_method
class PeftLoRA(PeftBackedMethod):
    name = "lora-qkv"
    config_class = PeftLoRAConfig
    families = ("vit",)
    prefix = "lora_"
    use_dora: ClassVar[bool] = False
    summary = "LoRA (HF peft) on whole modules, by default the fused qkv (updates q, k and v)"
    paper = "Hu et al. 2021, LoRA (ICLR 2022); implementation: HF peft"

    def peft_config(self) -> PeftConfig:
        cfg = self.config
        return LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, use_dora=self.use_dora,
                          **self.targets())


@register_method
class DoRA(PeftLoRA):
    """LoRA for the direction of each weight row plus a trained per-row magnitude (peft ``use_dora``).

    The magnitude starts at the row norms of the frozen weight and B at zero, so the adapted
    model starts as the base model.
    """

    name = "dora"
    use_dora = True
    summary = "DoRA (HF peft): LoRA direction + trained per-output magnitude, on the fused qkv"
    paper = "Liu et al. 2024, DoRA: Weight-Decomposed Low-Rank Adaptation (ICML)"


@dataclass
class LoRAConvConfig(PeftLoRAConfig):
    target_modules: tuple[str, ...] = ("conv2",)  # module names peft adapts: each bottleneck's 3x3 conv


@register_method
class LoRAConv(PeftLoRA):
    """LoRA on a ResNet's convolutions: A is a k x k conv to ``rank`` channels, B a 1x1 conv back.

    By default only each bottleneck's 3x3 ``conv2`` (16 in ResNet-50): the spatial convs, the
    same places TSA puts its adapters, so the two are comparable; ``target_modules`` can add
    ``conv1``, ``conv3`` or ``downsample.0``.
    """

    name = "lora-conv"
    config_class = LoRAConvConfig
    families = ("resnet",)
    exclude_modules = None
    summary = "LoRA (HF peft) on each ResNet bottleneck's 3x3 conv (rank-r conv pair)"
    paper = "Hu et al. 2021, LoRA (ICLR 2022); conv form as implemented by HF peft"


# --- (IA)^3 ------------------------------------------------------------------------------------


@dataclass
class IA3MethodConfig(MethodConfig):
    target_modules: tuple[str, ...] = ("qkv", "fc2")  # modules whose activations get a learned scale
    feedforward_modules: tuple[str, ...] = ("fc2",)  # of those, scale the input (MLP hidden) instead of the output

    def __post_init__(self):
        check_targets("IA3", self.target_modules)
        if isinstance(self.feedforward_modules, str):
            raise ValueError(f"IA3 feedforward_modules must be a list of module names, "
                             f"got {self.feedforward_modules!r}")
        missing = sorted(set(self.feedforward_modules) - set(self.target_modules))
        if missing:
            raise ValueError(f"IA3 feedforward_modules {missing} must also be in target_modules "
                             f"{list(self.target_modules)}")


@register_method
class IA3(PeftBackedMethod):
    """(IA)^3: learned vectors (initialised to 1) that rescale activations.

    The paper rescales keys, values and the FFN's hidden activations. timm fuses q, k and v in
    one ``qkv`` Linear and peft scales whole modules, so the output vector here covers q as well
    (3d per block instead of 2d); ``fc2`` as a feed-forward module scales its input, which is
    exactly the FFN hidden activation after GELU. Per block: 3d + mlp_hidden weights.
    """

    name = "ia3"
    config_class = IA3MethodConfig
    families = ("vit",)
    prefix = "ia3_"
    summary = "(IA)^3 (HF peft): learned rescaling of the qkv outputs and the MLP hidden units"
    paper = ("Liu et al. 2022, Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than "
             "In-Context Learning (NeurIPS)")

    def peft_config(self) -> PeftConfig:
        cfg = self.config
        return IA3Config(feedforward_modules=list(cfg.feedforward_modules), **self.targets())


# --- LyCORIS: LoHa and LoKr --------------------------------------------------------------------


@dataclass
class LoHaMethodConfig(MethodConfig):
    label: ClassVar[str] = "LoHa"  # for error messages
    rank: int = 8  # r of each of the two factorisations
    alpha: float = 8.0  # scaling numerator: updates are scaled by alpha / rank (peft's default: 1)
    rank_dropout: float = 0.0  # dropout over the rank dimension of the update, while training
    module_dropout: float = 0.0  # probability of skipping the whole update for a batch, while training
    target_modules: tuple[str, ...] = ("qkv",)  # module names peft adapts

    def __post_init__(self):
        check_rank_and_dropout(self.label, self.rank, rank_dropout=self.rank_dropout,
                               module_dropout=self.module_dropout)
        check_targets(self.label, self.target_modules)


@register_method
class LoHa(PeftBackedMethod):
    """LoHa: the update is the Hadamard product of two rank-r products, (W1a W1b) * (W2a W2b).

    peft initialises W2b to zero (``init_weights=True``), so the update starts at exactly zero.
    """

    name = "loha"
    config_class = LoHaMethodConfig
    families = ("vit",)
    prefix = "hada_"
    summary = "LoHa (HF peft): Hadamard product of two rank-r factorisations, on the fused qkv"
    paper = "Hyeon-Woo et al. 2022, FedPara (ICLR); LyCORIS (Yeh et al. 2024, ICLR)"

    def peft_config(self) -> PeftConfig:
        cfg = self.config
        return LoHaConfig(r=cfg.rank, alpha=cfg.alpha, rank_dropout=cfg.rank_dropout,
                          module_dropout=cfg.module_dropout, **self.targets())


@dataclass
class LoKrMethodConfig(LoHaMethodConfig):
    label: ClassVar[str] = "LoKr"
    decompose_both: bool = False  # also factor the small Kronecker factor W1 into rank-r matrices
    decompose_factor: int = -1  # size of W1's dimensions (-1: split each dimension near its square root)

    def __post_init__(self):
        super().__post_init__()
        if self.decompose_factor == 0 or self.decompose_factor < -1:
            raise ValueError(f"LoKr decompose_factor must be -1 or positive, got {self.decompose_factor}")


@register_method
class LoKr(PeftBackedMethod):
    """LoKr: the update is a Kronecker product W1 (x) W2, with W2 (and optionally W1) low rank.

    peft initialises W1 (or its first factor) to zero, so the update starts at exactly zero.
    """

    name = "lokr"
    config_class = LoKrMethodConfig
    families = ("vit",)
    prefix = "lokr_"
    summary = "LoKr (HF peft): Kronecker-product update (small factor x low-rank factor), on the fused qkv"
    paper = "Edalati et al. 2022, KronA; LyCORIS (Yeh et al. 2024, ICLR)"

    def peft_config(self) -> PeftConfig:
        cfg = self.config
        return LoKrConfig(r=cfg.rank, alpha=cfg.alpha, rank_dropout=cfg.rank_dropout,
                          module_dropout=cfg.module_dropout, decompose_both=cfg.decompose_both,
                          decompose_factor=cfg.decompose_factor, **self.targets())
