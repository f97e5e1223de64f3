"""ia3: (IA)^3 (Liu et al. 2022) via HF peft: learned rescaling of chosen activations. Shared peft
code: ``_peft.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from peft import IA3Config, PeftConfig

from ._base import MethodConfig, register_method
from ._peft import (
    PeftBackedMethod,
    check_targets,
)


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
