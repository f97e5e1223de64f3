"""Partial fine-tuning: the last ``k`` transformer blocks train, the rest of the backbone stays frozen.

The "Partial-k" baseline of Jia et al. 2022 ("Visual Prompt Tuning", ECCV), after Yosinski et
al. 2014 ("How transferable are features in deep neural networks?") and MAE's partial
fine-tuning (He et al. 2022). Everything in the chosen blocks trains, and so does the final
``norm`` when the model has one (timm's avg-pool ViTs use ``fc_norm``, part of the head,
instead). Why: the classic baseline between linear probing and full fine-tuning. Selection
only: nothing is injected, so merging is a no-op and ``unload`` returns the model as it is.

Written here because HF peft has no selection-only tuner.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ._base import MethodConfig, SelectionMethod, register_method


@dataclass
class PartialConfig(MethodConfig):
    k: int = 1  # how many of the last blocks train (1 <= k <= depth; k = depth is FFT minus the embeddings)

    def __post_init__(self):
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"partial-k needs k >= 1 (the number of last blocks to train), got {self.k!r}")


@register_method
class PartialFineTuning(SelectionMethod):
    name = "partial-k"
    config_class = PartialConfig
    families = ("vit",)
    summary = "partial fine-tuning: the last k blocks (and the final norm) train"
    paper = "Partial-k baseline of Jia et al. 2022 (VPT); Yosinski et al. 2014; He et al. 2022 (MAE)"

    def inject(self, model: nn.Module) -> nn.Module:
        self._check_depth(model)
        return model

    def _check_depth(self, model: nn.Module) -> int:
        depth = len(model.blocks)
        if self.config.k > depth:
            raise ValueError(f"partial-k: k={self.config.k} but the model has only {depth} blocks; "
                             f"choose k between 1 and {depth}")
        return depth

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        depth = self._check_depth(model)
        last = "|".join(str(i) for i in range(depth - self.config.k, depth))
        return [rf"^blocks\.(?:{last})\.", r"^norm\."]
