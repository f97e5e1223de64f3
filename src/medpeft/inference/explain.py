"""Heatmaps of where a model looked: attention rollout for ViTs, Grad-CAM for ResNets.

- **Attention rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"; the
  recipe of jacobgil/vit-explain): each block's attention, averaged over heads, plus the identity
  for the residual path, rows renormalised, multiplied through the blocks. medpeft's ViTs classify
  the average of the patch tokens (``global_pool="avg"``), so a patch's relevance is its column
  of the rolled-out matrix averaged over the output patch rows (the class token's row for
  ``global_pool="token"``). Rollout is class-agnostic: it shows what the model attends to, not
  the evidence for one label. Neither captum nor grad-cam implements it, so it is written here
  (20 lines); attention is read by hooking each timm ``Attention``'s ``attn_drop`` with timm's
  fused kernel switched off for that one forward pass.
- **Grad-CAM** (Selvaraju et al. 2017) on the last ResNet stage, for one output (the positive
  class of a binary run, the most probable label or class otherwise): captum's ``LayerGradCam``,
  a maintained implementation, with ReLU, upsampled bilinearly to the input size.

Which explainer applies is the model's family (:func:`medpeft.models.family_of`), looked up in
:data:`EXPLAINERS`; a new family is one more registered function. Heatmaps are (B, H, W) arrays
in [0, 1] at the model's input size, each scaled to its own minimum and maximum (so they show
where the model looked most, relative to the rest of that image); :func:`overlay` blends one
over the image the model saw.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import family_of
from ..registry import Registry

#: family -> (name shown to users, function(model, images (B, 3, H, W), targets (B,)) -> (B, H, W))
EXPLAINERS: Registry[tuple[str, Callable]] = Registry("explainer")


def explain(model: nn.Module, images: torch.Tensor, targets: list[int]) -> tuple[np.ndarray, str]:
    """(heatmaps (B, H, W) in [0, 1], the explainer's name) for ``images`` and output ``targets``."""
    name, function = EXPLAINERS.get(family_of(model))
    with torch.enable_grad():
        heat = function(model, images, torch.as_tensor(targets, dtype=torch.long))
    heat = heat.detach().float().clamp_min(0)
    low = heat.flatten(1).amin(dim=1)[:, None, None]
    span = (heat.flatten(1).amax(dim=1)[:, None, None] - low).clamp_min(1e-12)
    return ((heat - low) / span).cpu().numpy(), name  # each map min-max scaled, as grad-cam's scale_cam_image


@contextlib.contextmanager
def _attention_maps(model: nn.Module):
    """Collects every block's attention probabilities (B, heads, N, N) during one forward pass."""
    from timm.models.vision_transformer import Attention

    maps: list[torch.Tensor] = []
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no timm Attention layers to roll out")
    hooks = [layer.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
             for layer in layers]
    fused = [layer.fused_attn for layer in layers]
    for layer in layers:
        layer.fused_attn = False  # the unfused path computes the attention matrix that is hooked
    try:
        yield maps
    finally:
        for layer, value in zip(layers, fused):
            layer.fused_attn = value
        for hook in hooks:
            hook.remove()


def attention_rollout(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Relevance of each patch to the pooled output, upsampled to the input size: (B, H, W)."""
    with torch.no_grad(), _attention_maps(model) as maps:
        model(images)
    batch, tokens = maps[0].shape[0], maps[0].shape[-1]
    eye = torch.eye(tokens, device=images.device)
    rollout = eye.expand(batch, tokens, tokens)
    for attention in maps:  # (B, heads, N, N), block by block
        fused = 0.5 * attention.mean(dim=1) + 0.5 * eye  # residual connection
        rollout = (fused / fused.sum(dim=-1, keepdim=True)) @ rollout
    grid = tuple(model.patch_embed.grid_size)
    patches = grid[0] * grid[1]  # patch tokens are the last ones (after class/register/prompt tokens)
    rows = rollout[:, :1] if getattr(model, "global_pool", "avg") == "token" else rollout[:, -patches:]
    relevance = rows[:, :, -patches:].mean(dim=1).reshape(batch, 1, *grid)
    return F.interpolate(relevance, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """captum's Grad-CAM on the last stage of a timm ResNet, upsampled to the input size: (B, H, W)."""
    from captum.attr import LayerAttribution, LayerGradCam

    inputs = images.detach().clone().requires_grad_(True)  # frozen weights: the graph starts here
    cam = LayerGradCam(model, model.layer4).attribute(inputs, target=targets.to(images.device),
                                                      relu_attributions=True)  # (B, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(images.shape[-2:]), interpolate_mode="bilinear")[:, 0]


EXPLAINERS.add("vit", ("attention rollout", attention_rollout))
EXPLAINERS.add("resnet", ("Grad-CAM", grad_cam))


def explanation_target(task: str, scores: np.ndarray) -> int:
    """The output a class-specific heatmap explains: a binary run's only output, else the most probable."""
    return 0 if task == "binary" else int(np.argmax(scores))


def display_image(image: np.ndarray, img_size: int, min_side: int = 256) -> np.ndarray:
    """The decoded image (H, W[, 3]) in [0, 1] as the model sees it (resized, centre-cropped square),
    at ``max(img_size, min_side)`` pixels for viewing: (S, S, 3)."""
    from torchvision.transforms import v2

    from ..data.transforms import to_chw

    side = max(img_size, min_side)
    view = v2.Compose([v2.Resize(side, antialias=True), v2.CenterCrop(side)])(to_chw(image))
    return view.clamp(0, 1).permute(1, 2, 0).numpy()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6, colormap: str = "jet"):
    """A PIL RGB image: ``heat`` (h, w) in [0, 1] resized to ``image`` (S, S, 3) and blended over it,
    more opaque where it is hotter, so cold regions show the image unchanged."""
    from matplotlib import colormaps
    from PIL import Image

    size = image.shape[:2]
    heat = F.interpolate(torch.from_numpy(heat)[None, None].float(), size=size, mode="bilinear",
                         align_corners=False)[0, 0].clamp(0, 1).numpy()
    colours = colormaps[colormap](heat)[..., :3]  # (S, S, 3)
    weight = alpha * heat[..., None]
    blended = (1 - weight) * image + weight * colours
    return Image.fromarray(np.round(blended * 255).astype(np.uint8))
