"""lora-qkv: HF peft's LoRA on whole modules of a ViT, by default the fused qkv (q, k and v all
updated, unlike ``lora``'s q and v slices). Shared peft code: ``_peft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peft import LoraConfig, PeftConfig

from ._base import MethodConfig, register_method
from ._peft import (
    PeftBackedMethod,
    check_rank_and_dropout,
    check_targets,
)


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
