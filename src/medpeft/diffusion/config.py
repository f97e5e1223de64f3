"""Everything a diffusion run needs, as typed configs saved to its ``config.yaml``.

One schema serves pretraining and adaptation: a pretraining run is ``method: full`` with no
``base`` (random initialisation); an adaptation run names its ``base`` (a diffusion run
directory or a cached name) and a method of :data:`medpeft.methods.METHODS` that fits the ``unet``
family (`medpeft methods --backbone unet`; ``full`` is the old name of ``fft``, ``bias`` of ``bitfit``).
A run with ``train.steps: 0`` trains nothing: it scores its base model on the target's prompts
(the "no adaptation" row of a study).
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass, field

from ..serialization import from_dict, to_dict
from ..data.fractions import check_fraction
from ..runtime.device import check_device_name
from ..methods import METHODS, MethodConfig, method_config

SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # diffusers' beta schedules
SAMPLERS = ("ddim", "ddpm")


@dataclass
class UNetConfig:
    channels: tuple[int, ...] = (16, 32, 64)  # channels per resolution level (each level after the first halves the size)
    attention: tuple[bool, ...] = (False, False, True)  # cross-attention (text) blocks per level; the middle block always has one
    layers_per_block: int = 1  # ResNet layers per level (diffusers' layers_per_block)
    head_dim: int = 8  # attention head width (diffusers' attention_head_dim)
    norm_groups: int = 8  # GroupNorm groups; divides every channel count
    timesteps: int = 1000  # diffusion steps of the forward process (DDPM: 1000)
    beta_schedule: str = "squaredcos_cap_v2"  # linear (DDPM) | scaled_linear (Stable Diffusion) | squaredcos_cap_v2 (cosine, Nichol & Dhariwal)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.attention = tuple(bool(a) for a in self.attention)
        if not self.channels or len(self.channels) != len(self.attention):
            raise ValueError(f"unet.channels {list(self.channels)} and unet.attention {list(self.attention)} "
                             "need one entry per level")
        if self.layers_per_block < 1 or self.head_dim < 1 or self.norm_groups < 1 or self.timesteps < 2:
            raise ValueError("layers_per_block, head_dim and norm_groups must be at least 1, timesteps at least 2")
        bad = [c for c in self.channels if c % self.norm_groups or c % self.head_dim]
        if bad:
            raise ValueError(f"unet channels {bad} are not divisible by norm_groups {self.norm_groups} and "
                             f"head_dim {self.head_dim}")
        if self.beta_schedule not in SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {SCHEDULES}, got {self.beta_schedule!r}")


@dataclass
class CaptionConfig:
    modality: str | None = None  # what the images are ("chest X-ray"); None: the data source's own
    class_template: str = "a {modality}, {label}"  # binary and multi-class tasks: one caption per class
    findings_template: str = "a {modality} with {findings}"  # multi-label tasks, one or more findings present
    no_finding_template: str = "a {modality} with no finding"  # multi-label tasks, no finding present
    phrases: dict = field(default_factory=dict)  # label name -> words in the caption, e.g. {effusion: a pleural effusion}

    def __post_init__(self):
        allowed = {"class_template": {"modality", "label"}, "findings_template": {"modality", "findings"},
                   "no_finding_template": {"modality"}}
        for name, names in allowed.items():
            template = getattr(self, name)
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as err:
                raise ValueError(f"captions.{name} {template!r} is not a valid template ({err})") from None
            if used - names:
                raise ValueError(f"captions.{name} {template!r} uses {sorted(used - names)}; it may use "
                                 f"{', '.join('{' + n + '}' for n in sorted(names))}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.phrases.items()):
            raise ValueError(f"captions.phrases maps label names to text, got {self.phrases!r}")


@dataclass
class DiffusionDataConfig:
    specs: tuple[str, ...] = ("synthetic-cxr?size=28",)  # dataset specs; their training images (with captions) are pooled
    data_root: str | None = None  # folder with the data files; default $MEDPEFT_DATA / the source's
    fraction: float = 1.0  # fraction of the training images (per spec), (0, 1]
    fraction_seed: int = 0  # seed of the training subset (fixed, so seeds vary training only)
    skip_bad: bool = False  # leave out missing/corrupt items with a warning instead of stopping
    img_size: int = 28  # side of the generated images in pixels (images are resized to it)
    allow_overlap: bool = False  # the same image (path or pixels) in two splits: a warning instead of an error

    def __post_init__(self):
        if not self.specs:
            raise ValueError("give at least one dataset spec (--data)")
        self.specs = tuple(self.specs)
        check_fraction(self.fraction)
        if self.img_size < 8:
            raise ValueError(f"img_size must be at least 8 pixels, got {self.img_size}")


@dataclass
class TextConfig:
    max_tokens: int = 24  # captions are cut to this many word pieces (with [CLS] and [SEP])
    drop: float = 0.1  # training: probability of the empty caption, for classifier-free guidance

    def __post_init__(self):
        if self.max_tokens < 3:
            raise ValueError(f"text.max_tokens must be at least 3, got {self.max_tokens}")
        if not 0.0 <= self.drop < 1.0:
            raise ValueError(f"text.drop must be in [0, 1), got {self.drop}")


@dataclass
class DiffusionTrainConfig:
    epochs: int = 10  # passes over the training images (unless steps is set; min_steps may raise it)
    steps: int | None = None  # run length in optimiser steps; 0 = no training (score the base model as it is)
    min_steps: int | None = None  # raise epochs until the run takes at least this many optimiser steps
    batch_size: int = 32
    lr: float | None = None  # peak learning rate; None = the method's default
    min_lr: float = 0.0  # floor of the cosine schedule
    warmup_epochs: float = 0.0  # linear warmup length, in epochs
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    clip_grad: float | None = 1.0  # max gradient norm; None = no clipping
    seed: int = 0  # seeds initialisation, data order, noise and timesteps
    val_images: int = 64  # validation images for the held-out denoising loss (fixed noise and timesteps)
    num_workers: int = 0  # DataLoader workers (0 = in process)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    keep_checkpoint: bool = False  # keep checkpoint-last.pt after the run completes

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps must be 0 (no training) or more, got {self.steps}")
        if self.min_steps is not None and self.min_steps < 1:
            raise ValueError(f"min_steps must be at least 1 (or unset), got {self.min_steps}")
        if self.steps is not None and self.min_steps is not None:
            raise ValueError("steps and min_steps cannot both be set; keep one of --steps and --min-steps")
        check_device_name(self.device)
        for name in ("lr", "clip_grad"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or unset), got {value}")
        for name in ("min_lr", "warmup_epochs", "weight_decay", "val_images", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")


@dataclass
class SampleConfig:
    sampler: str = "ddim"  # ddim (deterministic, few steps) | ddpm (ancestral, all timesteps)
    steps: int = 20  # denoising steps of the DDIM sampler
    guidance: float = 2.0  # classifier-free guidance scale (1 = none; each step then costs one UNet pass, not two)
    grid_images: int = 8  # images per prompt in the samples/*.png grids of a finished run (0 = none)
    grid_prompts: int = 4  # grids for at most this many of the training data's most frequent captions

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.steps < 1 or self.guidance < 0 or self.grid_images < 0 or self.grid_prompts < 0:
            raise ValueError("sample.steps must be at least 1; guidance, grid_images and grid_prompts cannot "
                             "be negative")


@dataclass
class ScoreConfig:
    judge: str | None = None  # classifier run directory (`medpeft finetune` on real target images); None = no scores
    images: int = 200  # images generated for the scores: one per caption of this many real test images
    neighbours: int = 3  # k of the k-NN manifolds of precision/recall (Kynkäänniemi et al.: 3)
    seed: int = 0  # seeds the real test halves and the sampling noise of the scores

    def __post_init__(self):
        if self.images < 2 or self.neighbours < 1:
            raise ValueError("score.images must be at least 2 and score.neighbours at least 1")


@dataclass
class DiffusionConfig:
    data: DiffusionDataConfig = field(default_factory=DiffusionDataConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    base: str | None = None  # pretrained diffusion model: a run directory or a cached name; None = random init
    method: str = "full"  # adaptation method (see `medpeft methods --backbone unet`); full = fft
    method_options: MethodConfig | None = None  # the method's own options, e.g. {rank: 4}; None: its UNet defaults
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)

    def __post_init__(self):
        # the name, the options (over the method's UNet defaults) and that the method fits a UNet
        self.method_options = method_config(self.method, self.method_options, family="unet")
        levels = len(self.unet.channels)
        if self.data.img_size % 2 ** (levels - 1):
            raise ValueError(f"img_size {self.data.img_size} must be divisible by {2 ** (levels - 1)} "
                             f"({levels} UNet levels halve it {levels - 1} times)")
        if self.base is None and METHODS.get(self.method).name != "fft":
            raise ValueError(f"method {self.method!r} adapts a pretrained model: give --base (a diffusion run "
                             "directory or cached name), or use method full to train from scratch")
        if self.train.steps == 0 and self.base is None:
            raise ValueError("steps 0 (no training) scores a pretrained model: give --base")
        peak = self.learning_rate
        if self.train.min_lr > peak:
            raise ValueError(f"min_lr {self.train.min_lr:g} is above the peak learning rate {peak:.3g}")

    @property
    def learning_rate(self) -> float:
        return self.train.lr if self.train.lr is not None else METHODS.get(self.method).diffusion_lr

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "DiffusionConfig":
        if not isinstance(values, dict):
            raise ValueError(f"diffusion config: expected a mapping of options, got {type(values).__name__}")
        values = dict(values)
        options = values.pop("method_options", None)  # typed by the method, once its name is known
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"diffusion config.method_options: expected a mapping such as {{rank: 4}}, got {options!r}")
        config = from_dict(cls, values, where="diffusion config")
        if options:
            config.method_options = method_config(config.method, options, family="unet")
        return config


def auto_val_every(epochs: int, validations: int = 10) -> int:
    """Epochs between held-out losses: about ``validations`` of them per run."""
    return max(1, math.ceil(epochs / validations))
