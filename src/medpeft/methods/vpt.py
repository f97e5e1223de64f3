"""Visual Prompt Tuning: learned prompt tokens join the token sequence of a frozen ViT.

Jia et al. 2022, "Visual Prompt Tuning" (ECCV). Why: the backbone stays untouched and only a
few tokens per layer are learned (about 0.1% of ViT-B's weights for VPT-deep with 10 tokens).
Following the official code (KMnP/vpt, ``src/models/vit_prompt/vit.py``):
- ``vpt-shallow``: ``num_tokens`` prompts (``vpt_prompts``, (1, n, d)) are inserted after the
  class token, once, before block 0; they then travel through every block like patch tokens.
- ``vpt-deep``: block 0 gets those prompts too, and before every later block ``i`` the prompt
  slots are overwritten with that block's own prompts (``vpt_deep_prompts[i - 1]``,
  (depth - 1, n, d)); L x n x d weights in all (92,160 for ViT-B/16 with 10 tokens).
- Prompts carry no position embedding, get ``dropout`` each time they are inserted, and start
  uniform in ±sqrt(6 / (fan_in + d)), fan_in = channels x patch area of the patch embedding
  (VPT's "xavier" value, 3 x 16 x 16 for RGB ViT-B/16).
- After the last block the prompt tokens are dropped, so the final norm and the pooling see
  exactly the tokens they see without VPT: the avg pool medpeft uses (then ``fc_norm``)
  averages over patch tokens only, never over prompts; ``global_pool="token"`` reads the class
  token, as VPT does.

Prompts change the function from the start (``identity_at_init = False``) and cannot be merged.

How: the model's class is switched to :class:`PromptedVisionTransformer`, a timm
``VisionTransformer`` subclass whose only change is ``forward_features``; the model object, its
modules and its state-dict keys stay as they are, plus the prompt parameters.

Written here because HF peft's prompt tuning prepends virtual tokens to a transformers language
model's input embeddings; it has no per-layer prompts and does not apply to timm ViTs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from torch.utils.checkpoint import checkpoint

from ._base import Method, MethodConfig, register_method


@dataclass
class VPTConfig(MethodConfig):
    num_tokens: int = 10  # n: prompt tokens per layer (VPT searches 1-200 per task; 10 is a common default)
    dropout: float = 0.0  # dropout on the prompt tokens each time they enter the sequence (VPT's PROMPT.DROPOUT)

    def __post_init__(self):
        if not isinstance(self.num_tokens, int) or self.num_tokens < 1:
            raise ValueError(f"VPT num_tokens must be a positive integer, got {self.num_tokens!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"VPT dropout must be in [0, 1), got {self.dropout}")


class PromptedVisionTransformer(VisionTransformer):
    """A timm ViT whose blocks see ``vpt_prompts`` (and ``vpt_deep_prompts``) after the prefix tokens."""

    vpt_prompts: nn.Parameter  # (1, n, d)
    vpt_deep_prompts: nn.Parameter | None  # (depth - 1, n, d) for VPT-deep, else None
    vpt_dropout: nn.Dropout

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Prompts are tokens, like ``cls_token`` and ``pos_embed``: no weight decay (timm's
        optimizer factory reads this set)."""
        return set(super().no_weight_decay()) | {"vpt_prompts", "vpt_deep_prompts"}

    def _prompt_tokens(self, prompts: torch.Tensor, batch: int) -> torch.Tensor:
        return self.vpt_dropout(prompts.expand(batch, -1, -1))  # (B, n, d), a dropout mask per sample

    def forward_features(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                         is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("VPT inserts prompt tokens and does not support attention masks")
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))  # (B, P + N, d)
        batch, p, n = x.shape[0], self.num_prefix_tokens, self.vpt_prompts.shape[1]
        x = torch.cat([x[:, :p], self._prompt_tokens(self.vpt_prompts, batch), x[:, p:]], dim=1)  # (B, P + n + N, d)
        for i, block in enumerate(self.blocks):
            if i > 0 and self.vpt_deep_prompts is not None:  # VPT-deep: this block's own prompts
                deep = self._prompt_tokens(self.vpt_deep_prompts[i - 1:i], batch)
                x = torch.cat([x[:, :p], deep, x[:, p + n:]], dim=1)
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = torch.cat([x[:, :p], x[:, p + n:]], dim=1)  # drop the prompts: (B, P + N, d) as without VPT
        return self.norm(x)


def add_prompts(model: VisionTransformer, num_tokens: int, dropout: float, deep: bool) -> None:
    """Switch ``model`` to :class:`PromptedVisionTransformer` in place and create its prompts."""
    if type(model) is not VisionTransformer:
        raise ValueError(f"VPT needs a plain timm VisionTransformer, got {type(model).__name__}"
                         + (" (VPT is already applied)" if isinstance(model, PromptedVisionTransformer) else ""))
    d, depth = model.embed_dim, len(model.blocks)
    proj = model.patch_embed.proj  # Conv2d(channels, d, kernel=patch)
    factory = dict(device=proj.weight.device, dtype=proj.weight.dtype)
    fan_in = proj.in_channels * math.prod(model.patch_embed.patch_size)
    bound = math.sqrt(6.0 / (fan_in + d))  # VPT: sqrt(6 / (3 * patch area + d)) for RGB
    model.__class__ = PromptedVisionTransformer
    model.vpt_prompts = nn.Parameter(torch.empty(1, num_tokens, d, **factory).uniform_(-bound, bound))
    deep_prompts = torch.empty(depth - 1, num_tokens, d, **factory).uniform_(-bound, bound) if deep else None
    model.register_parameter("vpt_deep_prompts", nn.Parameter(deep_prompts) if deep else None)
    model.vpt_dropout = nn.Dropout(dropout)


class VisualPromptTuning(Method):
    """Shared by vpt-shallow and vpt-deep, which differ only in ``deep``."""

    config_class = VPTConfig
    families = ("vit",)
    identity_at_init = False  # prompts attend with the patches from the first step
    deep: ClassVar[bool] = False
    paper = "Jia et al. 2022, 'Visual Prompt Tuning' (ECCV)"

    def inject(self, model: nn.Module) -> nn.Module:
        add_prompts(model, self.config.num_tokens, self.config.dropout, self.deep)
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"^vpt_(deep_)?prompts$"]


@register_method
class VPTShallow(VisualPromptTuning):
    name = "vpt-shallow"
    summary = "VPT-shallow: learned prompt tokens inserted once, before the first block"


@register_method
class VPTDeep(VisualPromptTuning):
    name = "vpt-deep"
    deep = True
    summary = "VPT-deep: new learned prompt tokens at the input of every block"
