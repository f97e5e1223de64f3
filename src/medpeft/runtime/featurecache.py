"""Frozen-feature caching: a ViT whose first blocks train nothing is run through them once.

A linear probe (every block frozen) and partial-k (blocks 0..depth-k-1 frozen) recompute the
same frozen features every epoch when the training inputs are deterministic. With caching,
the frozen part — patch embedding, position embedding and the leading frozen blocks; for a
linear probe also the final norm and the pooling — runs once over the training and validation
images, in eval mode, and each epoch trains only the rest (:class:`FrozenSuffix`) on the stored
outputs. The cached run takes the same batches in the same order as the uncached one (the
shuffle depends only on the seed and the number of images).

The frozen part is computed in eval mode, as MAE's linear probe runs it: drop-path or dropout
inside frozen blocks (``drop_path`` > 0, the default 0.1) is off there, while the trainable
blocks keep theirs. So a cached run equals an uncached run within float tolerance when the
frozen blocks have no stochastic depth (``drop_path=0``), and otherwise differs from the
uncached run only in that the frozen blocks' features are not randomly dropped.

When it applies (``feature_cache=auto``; ``on`` refuses to run otherwise, ``off`` never
caches):

* the backbone is a ViT whose forward is timm's own (no method replaced it);
* every trainable parameter lies in the blocks from some index k on, the final ``norm``,
  ``fc_norm`` or the head (so the model's first k blocks and embeddings train nothing);
* the frozen part has no BatchNorm (whose training-mode statistics change every batch);
* the training inputs are deterministic: no augmentation, no mixup or cutmix.

Where the features live: in memory when they take at most :data:`MEMORY_BUDGET` bytes, else in
a memory-mapped ``.npy`` file in the run directory, removed when the run ends. The cache is
made anew by each run from the run's own model and data, so it cannot go stale: a change of
data, backbone weights, image size or k changes what is computed.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from torch.utils.data import DataLoader, Dataset, TensorDataset

FEATURE_CACHE_MODES = ("auto", "on", "off")
MEMORY_BUDGET = int(float(os.environ.get("MEDPEFT_FEATURE_CACHE_GB", "4")) * 1024 ** 3)
HEAD_PARTS = ("norm", "fc_norm", "head")  # after the blocks: may train without spoiling the cache


def check_feature_cache(mode: str) -> None:
    if mode not in FEATURE_CACHE_MODES:
        raise ValueError(f"feature_cache must be one of {FEATURE_CACHE_MODES}, got {mode!r}")


@dataclass
class CachePlan:
    """What can be cached: the first ``start`` blocks (``pooled``: the whole backbone up to
    the pooled features), or nothing (``start`` None) for the reason given."""

    start: int | None
    pooled: bool
    reason: str

    @property
    def active(self) -> bool:
        return self.start is not None


def plan_cache(model: nn.Module, *, deterministic_inputs: str | None, mode: str = "auto") -> CachePlan:
    """Whether and how much of ``model`` to cache. ``deterministic_inputs`` is None when the
    training inputs are deterministic, else why not (e.g. ``"augment=flip"``)."""
    check_feature_cache(mode)
    plan = CachePlan(None, False, "feature_cache=off") if mode == "off" else _plan(model, deterministic_inputs)
    if mode == "on" and not plan.active:
        raise ValueError(f"feature_cache=on, but this run cannot cache frozen features: {plan.reason}. "
                         "Use feature_cache=auto (cache where possible) or off")
    return plan


def _plan(model: nn.Module, deterministic_inputs: str | None) -> CachePlan:
    if not isinstance(model, VisionTransformer):
        return CachePlan(None, False, f"caching supports ViTs, not {type(model).__name__}")
    if {"forward", "forward_features", "forward_head"} & set(vars(model)):
        return CachePlan(None, False, "the method replaced the ViT's forward")
    if deterministic_inputs is not None:
        return CachePlan(None, False, f"training inputs vary between epochs ({deterministic_inputs})")
    depth = len(model.blocks)
    start = depth
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        if parts[0] == "blocks":
            start = min(start, int(parts[1]))
        elif parts[0] not in HEAD_PARTS:
            return CachePlan(None, False, f"{name} trains and lies before the blocks")
    if start == 0:
        return CachePlan(None, False, "the first block trains")
    pooled = start == depth and not any(p.requires_grad for p in model.norm.parameters())
    frozen = [model.patch_embed, model.patch_drop, model.norm_pre, *model.blocks[:start]]
    if pooled:
        frozen.append(model.norm)
    stochastic = sorted({type(module).__name__ for part in frozen for module in part.modules()
                         if _varies_in_training(module)})
    if "BatchNorm" in " ".join(stochastic):
        return CachePlan(None, False, "the frozen part has BatchNorm, which trains on batch statistics")
    reason = f"blocks 0-{start - 1}" + (" and the final norm" if pooled else "") + " are frozen"
    if stochastic:
        reason += f" (computed in eval mode: their {', '.join(stochastic)} off)"
    return CachePlan(start, pooled, reason)


def _varies_in_training(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    rate = getattr(module, "p", None) if isinstance(module, nn.modules.dropout._DropoutNd) else None
    rate = rate if rate is not None else getattr(module, "drop_prob", None)
    if rate is None and type(module).__name__ == "PatchDropout":
        rate = module.prob
    return bool(rate)


class FrozenSuffix(nn.Module):
    """The trainable rest of ``model``, from the cached outputs of its first ``start`` blocks
    (tokens (B, T, D)) or, ``pooled``, from its pooled features (B, D). Shares ``model``'s
    parameters, so the optimiser and the saved adapter are ``model``'s own."""

    def __init__(self, model: VisionTransformer, start: int, pooled: bool):
        super().__init__()
        self.model, self.start, self.pooled = model, start, pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if not self.pooled:
            for block in m.blocks[self.start:]:
                x = block(x)
            return m.forward_head(m.norm(x))
        return m.head(m.head_drop(m.fc_norm(x)))

    @torch.no_grad()
    def prefix(self, images: torch.Tensor) -> torch.Tensor:
        """What the cache stores for ``images`` (run in eval mode by :func:`cache_features`)."""
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(images))))
        for block in m.blocks[:self.start]:
            x = block(x)
        return m.pool(m.norm(x)) if self.pooled else x


def cache_features(suffix: FrozenSuffix, dataset: Dataset, *, batch_size: int, device, autocast=None,
                   spill_dir: Path | None = None, name: str = "features") -> Dataset:
    """(features, target) pairs of ``dataset`` in its order, in memory or, past
    :data:`MEMORY_BUDGET`, in ``spill_dir/<name>.npy`` (memory-mapped)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = suffix.model
    was_training = model.training
    model.eval()
    features, targets, store = None, [], None
    start = 0
    for images, target in loader:
        with autocast or contextlib.nullcontext():
            out = suffix.prefix(images.to(device)).cpu()
        if features is None:
            features, store = _allocate(len(dataset), out, spill_dir, name)
        features[start:start + len(out)] = out
        start += len(out)
        targets.append(target)
    model.train(was_training)
    if store is not None:
        store.flush()
    return TensorDataset(features, torch.cat(targets))


def _allocate(n: int, first: torch.Tensor, spill_dir: Path | None, name: str):
    shape = (n, *first.shape[1:])
    nbytes = int(np.prod(shape)) * first.element_size()
    if nbytes <= MEMORY_BUDGET or spill_dir is None:
        return torch.empty(shape, dtype=first.dtype), None
    if first.dtype == torch.bfloat16:  # numpy has no bfloat16: store its bits
        raise ValueError("a bf16 feature cache larger than the memory budget is not supported; "
                         "raise MEDPEFT_FEATURE_CACHE_GB or use feature_cache=off")
    spill_dir.mkdir(parents=True, exist_ok=True)
    store = np.lib.format.open_memmap(spill_dir / f"{name}.npy", mode="w+",
                                      dtype=torch.empty(0, dtype=first.dtype).numpy().dtype, shape=shape)
    return torch.from_numpy(store), store
