"""Generative PEFT: a small text-conditioned diffusion model (diffusers' UNet2DConditionModel,
frozen all-MiniLM-L6-v2 text encoder), pretrained on one domain and adapted to another with
full fine-tuning, LoRA, DiffFit, attention, norm or bias tuning; scored by Fréchet distance,
precision/recall and conditional accuracy in a medpeft judge's feature space (Dutt et al. 2023,
the generative half).

    from medpeft.diffusion import DiffusionConfig, train_diffusion, load_model
    train_diffusion(DiffusionConfig(), "runs/diffusion/base", name="cxr-diffusion")
"""
from .config import (CaptionConfig, DiffusionConfig, DiffusionDataConfig, DiffusionTrainConfig, SampleConfig,
                     ScoreConfig, TextConfig, UNetConfig)
from .training import ensure_model, images_for, load_model, train_diffusion

__all__ = ["CaptionConfig", "DiffusionConfig", "DiffusionDataConfig", "DiffusionTrainConfig", "SampleConfig",
           "ScoreConfig", "TextConfig", "UNetConfig", "ensure_model",
           "images_for", "load_model", "train_diffusion"]
