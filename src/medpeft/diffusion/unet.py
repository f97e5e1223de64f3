"""The denoiser: diffusers' ``UNet2DConditionModel`` (Stable Diffusion's UNet) at a CPU's size,
and its DDPM / DDIM noise schedulers.

Stable Diffusion's UNet works on 64 x 64 x 4 VAE latents with 320-1280 channels and attention
at three resolutions; here it works on pixels (1 channel, 28 px) with 16-64 channels, and
cross-attends to the text only at the coarsest levels (7 x 7 and the middle block): attention
over 28 x 28 = 784 positions made a training step 10 x slower on a CPU. The architecture,
timestep embedding, cross-attention and schedulers are diffusers' own.
"""
from __future__ import annotations

import torch.nn as nn

from .config import UNetConfig
from .text import WIDTH


def build_unet(config: UNetConfig, img_size: int, channels: int = 1) -> nn.Module:
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention))
    return UNet2DConditionModel(sample_size=img_size, in_channels=channels, out_channels=channels,
                                down_block_types=down, up_block_types=up, block_out_channels=config.channels,
                                layers_per_block=config.layers_per_block, cross_attention_dim=WIDTH,
                                attention_head_dim=config.head_dim, norm_num_groups=config.norm_groups)


def train_scheduler(config: UNetConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.timesteps, beta_schedule=config.beta_schedule,
                         prediction_type="epsilon", clip_sample=True)


def sample_scheduler(config: UNetConfig, sampler: str):
    from diffusers import DDIMScheduler

    if sampler == "ddpm":
        return train_scheduler(config)
    return DDIMScheduler(num_train_timesteps=config.timesteps, beta_schedule=config.beta_schedule,
                         prediction_type="epsilon", clip_sample=True, set_alpha_to_one=True)
