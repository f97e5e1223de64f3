"""lokr: LoKr (Yeh et al. 2024) via HF peft: a Kronecker-product update. Shared peft code: ``_peft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peft import LoKrConfig, PeftConfig

from ._base import register_method
from ._peft import (
    PeftBackedMethod,
)
from .loha import LoHaMethodConfig


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
