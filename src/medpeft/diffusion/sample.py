"""Sampling: DDIM (Song et al. 2021) or DDPM ancestral steps with classifier-free guidance (Ho &
Salimans 2022), deterministic per seed; sample grids as PNG.

The schedulers' ``step`` is diffusers'; the loop around it (guidance, batching, seeding) is the
few lines every diffusers pipeline has, written here because ``StableDiffusionPipeline`` needs a
VAE and a CLIP tokenizer that this model does not have. The initial noise of every image is
drawn up front from one CPU generator seeded by ``seed``, so a batch size or device change
gives the same images (up to float rounding on other devices).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .config import SampleConfig, UNetConfig
from .unet import sample_scheduler


@torch.no_grad()
def generate(unet: nn.Module, cond: torch.Tensor, mask: torch.Tensor, uncond: torch.Tensor,
             uncond_mask: torch.Tensor, *, unet_config: UNetConfig, sample: SampleConfig, seed: int,
             img_size: int, channels: int, batch_size: int = 100) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] for the N captions whose token states are ``cond`` (N, T, D)."""
    device = next(unet.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(cond), channels, img_size, img_size), generator=generator)
    unet.eval()
    out = []
    for start in range(0, len(cond), batch_size):
        part = slice(start, start + batch_size)
        out.append(_denoise(unet, noise[part].to(device), cond[part].to(device), mask[part].to(device),
                            uncond.to(device), uncond_mask.to(device), unet_config, sample, generator))
    return ((torch.cat(out).clamp(-1, 1) + 1) / 2).cpu()


def _denoise(unet, x, cond, mask, uncond, uncond_mask, unet_config, sample, generator):
    scheduler = sample_scheduler(unet_config, sample.sampler)
    scheduler.set_timesteps(sample.steps)
    guided = sample.guidance != 1.0
    if guided:  # one pass over [empty caption; caption]: eps = u + g (c - u)
        n = len(x)
        states = torch.cat([uncond.expand(n, -1, -1), cond])
        masks = torch.cat([uncond_mask.expand(n, -1), mask])
    for t in scheduler.timesteps:
        if guided:
            eps = unet(torch.cat([x, x]), t, states, encoder_attention_mask=masks).sample
            u, c = eps.chunk(2)
            eps = u + sample.guidance * (c - u)
        else:
            eps = unet(x, t, cond, encoder_attention_mask=mask).sample
        step = {"generator": generator} if sample.sampler == "ddpm" else {}
        x = scheduler.step(eps.cpu() if step else eps, t, x.cpu() if step else x, **step).prev_sample.to(eps.device)
    return x


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


def save_grid(images: torch.Tensor, path: str | Path, title: str = "", columns: int = 8) -> Path:
    """A grid of images (N, C, H, W) in [0, 1] as a PNG, titled with the prompt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid

    columns = min(columns, len(images))
    grid = make_grid(images, nrow=columns, padding=2, pad_value=1.0).permute(1, 2, 0).numpy()
    rows = int(np.ceil(len(images) / columns))
    fig, ax = plt.subplots(figsize=(1.1 * columns + 0.2, 1.1 * rows + 0.5), dpi=100)
    ax.imshow(grid[..., 0] if images.shape[1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path
