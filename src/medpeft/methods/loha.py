"""loha: LoHa (Hyeon-Woo et al. 2022) via HF peft: a Hadamard product of two low-rank
factorisations. Shared peft code: ``_peft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peft import LoHaConfig, PeftConfig

from ._base import MethodConfig, register_method
from ._peft import (
    PeftBackedMethod,
    check_rank_and_dropout,
    check_targets,
)


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
