"""Backbones: timm models by short name, never downloaded, configured for medical fine-tuning.

ViTs use global average pooling followed by ``fc_norm``, as in MAE fine-tuning (timm's
``global_pool="avg"``); the patch size can be changed so small images still give a useful
token grid (patch 4 at 28 px, 8 at 64 px). Weights come only from ``--checkpoint``
(:mod:`medpeft.models.checkpoint`); ``pretrained=True`` is never passed to timm.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import timm
import torch.nn as nn
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer

from ..data.transforms import CXR_MEAN, CXR_STD
from ..registry import Registry

# short name -> timm architecture
BACKBONES: Registry[str] = Registry("backbone")
for _short, _timm_name in {
    "vit_tiny": "vit_tiny_patch16_224",
    "vit_small": "vit_small_patch16_224",
    "vit_base": "vit_base_patch16_224",
    "vit_large": "vit_large_patch16_224",
    "vit_huge": "vit_huge_patch14_224",
    "vit_base_dinov2": "vit_base_patch14_dinov2",
    "vit_large_dinov2": "vit_large_patch14_dinov2",
    "resnet50": "resnet50",
}.items():
    BACKBONES.add(_short, _timm_name)

FAMILIES = ("vit", "resnet")


@dataclass
class BackboneConfig:
    name: str = "vit_small"  # short name (see `medpeft methods`) or any timm architecture name
    img_size: int = 224  # input side in pixels (ViT position grid follows it)
    patch_size: int | None = None  # ViT patch size; None keeps the architecture's own
    drop_path: float = 0.1  # stochastic depth rate (MAE fine-tuning uses 0.1 for ViT-B)
    checkpoint: str | None = None  # pretrained weights: a file or a cached name; None = random init
    mean: tuple[float, ...] = CXR_MEAN  # input normalisation of the pretraining data
    std: tuple[float, ...] = CXR_STD
    timm_kwargs: dict = field(default_factory=dict)  # extra timm.create_model arguments, e.g. {depth: 4}

    def __post_init__(self):
        if self.img_size < 8:
            raise ValueError(f"img_size must be at least 8 pixels, got {self.img_size}")
        if self.patch_size is not None and (self.patch_size < 1 or self.img_size % self.patch_size):
            raise ValueError(f"patch_size {self.patch_size} must divide img_size {self.img_size}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def timm_name(self) -> str:
        if self.name in BACKBONES:
            return BACKBONES.get(self.name)
        if self.name in timm.list_models():
            return self.name
        BACKBONES.get(self.name)  # raises with the list of short names and a suggestion
        raise AssertionError  # unreachable


def family_of(model: nn.Module) -> str:
    """``vit`` or ``resnet``: which PEFT methods fit is decided by the model's class, not its name."""
    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, ResNet):
        return "resnet"
    raise ValueError(f"unsupported backbone class {type(model).__name__}; medpeft supports timm "
                     "VisionTransformer and ResNet models")


def head_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the task head that every method trains (classifier, plus ViT fc_norm)."""
    classifier = model.pretrained_cfg.get("classifier", "head")
    return (classifier, "fc_norm") if family_of(model) == "vit" else (classifier,)


def closed_residual_branches(model: nn.Module) -> dict[str, nn.Module]:
    """ResNet blocks whose residual branch is closed: block name -> its last BatchNorm, whose weight
    is all zero (timm's ``zero_init_last`` on a random init), so the branch adds only that norm's
    bias whatever its convolutions compute. Pretrained weights open them; meta tensors are skipped."""
    closed = {}
    for name, block in model.named_modules():
        last = block.bn3 if isinstance(block, Bottleneck) else block.bn2 if isinstance(block, BasicBlock) else None
        if last is not None and last.weight is not None and not last.weight.is_meta and not last.weight.any():
            closed[name] = last
    return closed


def create_backbone(config: BackboneConfig, num_classes: int) -> nn.Module:
    """A randomly initialised timm model with a fresh ``num_classes`` head."""
    kwargs = dict(num_classes=num_classes, drop_path_rate=config.drop_path, **config.timm_kwargs)
    if _is_vit(config.timm_name):
        kwargs.update(img_size=config.img_size, global_pool="avg")
        if config.patch_size is not None:
            kwargs["patch_size"] = config.patch_size
    elif config.patch_size is not None:
        raise ValueError(f"--patch-size applies to ViTs only, not {config.name}")
    model = timm.create_model(config.timm_name, pretrained=False, **kwargs)
    family_of(model)  # reject unsupported classes early
    return model


def _is_vit(timm_name: str) -> bool:
    """Whether timm builds this architecture with its VisionTransformer module."""
    return timm.models.is_model_in_modules(timm_name, ["vision_transformer"])
