"""Shared code of the methods implemented by HF peft (lora-qkv, dora, lora-conv, ia3, loha, lokr; one file each).

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
from typing import ClassVar

import torch.nn as nn
from peft import PeftConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer

from ._base import Method

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
