"""dora: DoRA (Liu et al. 2024) via HF peft's ``use_dora``: LoRA on the direction of each weight row
plus a trained per-row magnitude. Shared peft code: ``_peft.py``.
"""
from __future__ import annotations

from ._base import register_method
from .lora_qkv import PeftLoRA


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
