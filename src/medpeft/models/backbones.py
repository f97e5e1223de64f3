"""Backbones: timm models by short name, never downloaded, each carrying its own identity.

Like timm's pretrained configs, every registered backbone is data (:class:`BackboneSpec`): its
timm architecture, family, default image and patch size, the input mean/std of the weights it
is meant for, and the names of its task head. The normalisation constants live here, with the
models: the ViT entries use the chest X-ray statistics of MED-PEFT/MRM (what medpeft's own MAE
pretraining uses), the DINOv2 entries and ResNet-50 ImageNet's, as their published weights
expect. Any other timm architecture name works too; its identity comes from timm's pretrained
config.

A :class:`BackboneConfig` leaves size and statistics unset (None) by default. They are filled,
in this order, from the command line, from the card of ``--checkpoint`` (so a medpeft MAE
checkpoint fine-tunes at the size and statistics it was pretrained with), and from the spec;
:func:`resolve_backbone` also says where the command line contradicts the card.

ViTs use global average pooling followed by ``fc_norm``, as in MAE fine-tuning (timm's
``global_pool="avg"``); the patch size can be changed so small images still give a useful
token grid (patch 4 at 28 px, 8 at 64 px). Weights come only from ``--checkpoint``
(:mod:`medpeft.models.checkpoint`); ``pretrained=True`` is never passed to timm.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field

import timm
import torch
import torch.nn as nn
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from timm.models.vision_transformer import VisionTransformer

from ..registry import Registry

CXR_MEAN = (0.4785,)  # chest X-ray statistics used by MED-PEFT and MRM (one channel, repeated)
CXR_STD = (0.2834,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what ImageNet-trained weights (DINOv2, ResNet-50) expect
IMAGENET_STD = (0.229, 0.224, 0.225)

FAMILIES = ("vit", "resnet")
_FAMILY_CLASSES = {"vit": VisionTransformer, "resnet": ResNet}


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone is: architecture, family, default input and the head every method trains."""

    timm_name: str
    family: str  # vit | resnet
    img_size: int = 224  # default input side in pixels
    patch_size: int | None = 16  # ViT patch size; None for CNNs
    mean: tuple[float, ...] = CXR_MEAN  # input normalisation the weights expect
    std: tuple[float, ...] = CXR_STD
    head: tuple[str, ...] = ("head", "fc_norm")  # modules of the task head (always trained)
    stats: str = "chest X-ray (MED-PEFT/MRM)"  # where mean/std come from


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
_IMAGENET = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, stats="ImageNet")
for _short, _spec in {
    "vit_tiny": BackboneSpec("vit_tiny_patch16_224", "vit"),
    "vit_small": BackboneSpec("vit_small_patch16_224", "vit"),
    "vit_base": BackboneSpec("vit_base_patch16_224", "vit"),
    "vit_large": BackboneSpec("vit_large_patch16_224", "vit"),
    "vit_huge": BackboneSpec("vit_huge_patch14_224", "vit", patch_size=14),
    "vit_base_dinov2": BackboneSpec("vit_base_patch14_dinov2", "vit", patch_size=14, **_IMAGENET),
    "vit_large_dinov2": BackboneSpec("vit_large_patch14_dinov2", "vit", patch_size=14, **_IMAGENET),
    "resnet50": BackboneSpec("resnet50", "resnet", patch_size=None, head=("fc",), **_IMAGENET),
}.items():
    BACKBONES.add(_short, _spec)


def spec_for(name: str) -> BackboneSpec:
    """The registered spec of a short name, or one read from timm's config for a timm name."""
    if name in BACKBONES:
        return BACKBONES.get(name)
    if name not in timm.list_models():
        BACKBONES.get(name)  # raises with the short names and a close match
    cfg = timm.models.get_pretrained_cfg(name)
    family = ("vit" if timm.models.is_model_in_modules(name, ["vision_transformer"]) else
              "resnet" if timm.models.is_model_in_modules(name, ["resnet"]) else "other")
    vit = family == "vit"
    classifier = cfg.classifier if cfg is not None and isinstance(cfg.classifier, str) else "head"
    return BackboneSpec(
        timm_name=name, family=family, img_size=int(cfg.input_size[-1]) if cfg else 224,
        patch_size=_patch_of(name) if vit else None,
        mean=tuple(cfg.mean) if cfg else IMAGENET_MEAN, std=tuple(cfg.std) if cfg else IMAGENET_STD,
        head=(classifier, "fc_norm") if vit else (classifier,), stats=f"timm's config of {name}")


def _patch_of(timm_name: str) -> int | None:
    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False)
    return int(model.patch_embed.patch_size[0])


@dataclass
class BackboneConfig:
    name: str | None = None  # short name (see `medpeft methods`) or a timm architecture; None: the checkpoint card's, else vit_small
    img_size: int | None = None  # input side in pixels; None: the checkpoint card's, else the backbone's default
    patch_size: int | None = None  # ViT patch size; None: the checkpoint card's, else the architecture's own
    drop_path: float = 0.1  # stochastic depth rate (MAE fine-tuning uses 0.1 for ViT-B)
    checkpoint: str | None = None  # pretrained weights: a file or a cached name; None = random init
    mean: tuple[float, ...] | None = None  # input normalisation; None: the checkpoint card's, else the backbone's
    std: tuple[float, ...] | None = None  # (1 value, repeated over RGB, or 3)
    timm_kwargs: dict = field(default_factory=dict)  # extra timm.create_model arguments, e.g. {depth: 4}
    small_stem: bool | None = None  # ResNets: a 3x3 stride-1 stem without max-pooling, for 28-64 px images (MedMNIST's ResNet); None: the card's, else off

    def __post_init__(self):
        if self.img_size is not None and self.img_size < 8:
            raise ValueError(f"img_size must be at least 8 pixels, got {self.img_size}")
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(f"patch_size must be at least 1, got {self.patch_size}")
        if self.patch_size is not None and self.img_size is not None and self.img_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide img_size {self.img_size}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None:
                values = tuple(float(v) for v in values)
                if len(values) not in (1, 3):
                    raise ValueError(f"{name} takes 1 or 3 values (one per channel), got {list(values)}")
                if name == "std" and min(values) <= 0:
                    raise ValueError(f"std values must be positive, got {list(values)}")
                setattr(self, name, values)
        _check_timm_kwargs(self.timm_kwargs)

    @property
    def spec(self) -> BackboneSpec:
        return spec_for(self.name or DEFAULT_BACKBONE)

    @property
    def timm_name(self) -> str:
        return self.spec.timm_name

    def is_resolved(self) -> bool:
        return None not in (self.name, self.img_size, self.mean, self.std, self.small_stem) and (
            self.patch_size is not None or self.spec.patch_size is None)

    def with_defaults(self, card: dict | None = None) -> tuple["BackboneConfig", list[str]]:
        """A copy with every unset field filled from ``card`` (a checkpoint's), then the spec;
        and the warnings where a set field contradicts the card."""
        card = card or {}
        warnings, values = [], {}
        from_card = {"name": card.get("backbone"), "img_size": card.get("img_size"),
                     "patch_size": card.get("patch_size"),
                     "mean": tuple(card["mean"]) if card.get("mean") else None,
                     "std": tuple(card["std"]) if card.get("std") else None,
                     "timm_kwargs": (card.get("config") or {}).get("backbone", {}).get("timm_kwargs") or None,
                     "small_stem": (card.get("config") or {}).get("backbone", {}).get("small_stem")}
        for key, carded in from_card.items():
            given = getattr(self, key)
            given = None if given in ({}, ()) else given
            if given is not None and carded is not None and _differs(given, carded):
                warnings.append(f"{key} {_text(given)} differs from the checkpoint card's {_text(carded)} "
                                f"(the weights were pretrained with it); using {_text(given)} as given")
            values[key] = given if given is not None else carded
        spec = spec_for(values["name"] or DEFAULT_BACKBONE)
        values["name"] = values["name"] or DEFAULT_BACKBONE
        values["img_size"] = values["img_size"] or spec.img_size
        values["patch_size"] = values["patch_size"] or spec.patch_size
        values["mean"] = values["mean"] or spec.mean
        values["std"] = values["std"] or spec.std
        values["timm_kwargs"] = values["timm_kwargs"] or {}
        values["small_stem"] = bool(values["small_stem"])
        return dataclasses.replace(self, **values), warnings


DEFAULT_BACKBONE = "vit_small"


def _differs(given, carded) -> bool:
    if isinstance(given, tuple):
        return tuple(float(v) for v in given) != tuple(float(v) for v in carded)
    return given != carded


def _text(value) -> str:
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _check_timm_kwargs(kwargs: dict) -> None:
    """``{depth:2}`` (no space) is YAML for ``{"depth:2": None}``: say so instead of ignoring it."""
    if not isinstance(kwargs, dict):
        raise ValueError(f"timm_kwargs must be a mapping such as {{depth: 4}}, got {kwargs!r}")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            fix = ""
            if isinstance(key, str) and ":" in key and value is None:
                name, _, number = key.partition(":")
                fix = f"; write '{{{name.strip()}: {number.strip()}}}' (YAML needs a space after the colon)"
            raise ValueError(f"timm_kwargs: {key!r} is not an argument name{fix}")


CLASSIFIER_FAMILIES = ("vit", "resnet")  # timm backbones with a task head
FAMILIES = (*CLASSIFIER_FAMILIES, "unet")  # unet: the diffusion denoiser (medpeft.diffusion)


def family_of(model: nn.Module) -> str:
    """``vit``, ``resnet`` or ``unet``: which PEFT methods fit is decided by the model's class, not
    its name. ``unet`` is diffusers' ``UNet2DConditionModel`` (the denoiser of :mod:`medpeft.diffusion`),
    recognised by its class so that classifier code never imports diffusers."""
    if isinstance(model, VisionTransformer):
        return "vit"
    if isinstance(model, ResNet):
        return "resnet"
    if any(c.__name__ == "UNet2DConditionModel" and c.__module__.startswith("diffusers")
           for c in type(model).__mro__):
        return "unet"
    raise ValueError(f"unsupported backbone class {type(model).__name__}; medpeft supports timm "
                     "VisionTransformer and ResNet models and diffusers' UNet2DConditionModel")


def head_names(model: nn.Module) -> tuple[str, ...]:
    """Module names of the task head that every method trains (classifier, plus ViT fc_norm); a
    UNet has no head."""
    if family_of(model) == "unet":
        return ()
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


def timm_model_args(config: BackboneConfig, num_classes: int) -> dict:
    """The ``timm.create_model`` arguments of this backbone besides its stochastic depth: what an
    exported model's card needs to rebuild the architecture with timm alone."""
    if not config.is_resolved():
        config = config.with_defaults()[0]
    kwargs = dict(num_classes=num_classes, **config.timm_kwargs)
    if config.spec.family == "vit":
        kwargs.update(img_size=config.img_size, global_pool="avg")
        if config.patch_size is not None:
            kwargs["patch_size"] = config.patch_size
    elif config.patch_size is not None:
        raise ValueError(f"--patch-size applies to ViTs only, not {config.name}")
    return kwargs


def create_backbone(config: BackboneConfig, num_classes: int) -> nn.Module:
    """A randomly initialised timm model with a fresh ``num_classes`` head (unset sizes take the
    backbone's defaults; see :func:`resolve_backbone` for the checkpoint card's)."""
    if not config.is_resolved():
        config = config.with_defaults()[0]
    spec = config.spec
    kwargs = dict(timm_model_args(config, num_classes), drop_path_rate=config.drop_path)
    try:
        model = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    except TypeError as err:
        raise ValueError(_bad_kwargs_message(spec, config.timm_kwargs, err)) from None
    family_of(model)  # reject unsupported classes early
    if config.small_stem:
        _small_stem(model, config)
    return model


def _small_stem(model: nn.Module, config: BackboneConfig) -> None:
    """MedMNIST v2's ResNet for 28 px (as for CIFAR): conv1 3x3, stride 1, and no max-pooling, so a
    28-px image reaches the last stage at 4 x 4 instead of 1 x 1. Timm has no such stem option."""
    if family_of(model) != "resnet":
        raise ValueError(f"small_stem applies to ResNets only, not {config.name}")
    old = model.conv1
    if not isinstance(old, nn.Conv2d):
        raise ValueError(f"small_stem needs a ResNet with a single conv1 (stem_type ''), got {type(old).__name__}")
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False,
                            device=old.weight.device, dtype=old.weight.dtype)
    if not old.weight.is_meta:
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # timm's conv init
    model.maxpool = nn.Identity()


def check_backbone(config: BackboneConfig, num_classes: int = 1) -> None:
    """Build the backbone on the meta device (no memory, milliseconds): a bad name, size or
    ``timm_kwargs`` fails here, before a run touches disk or data."""
    with torch.device("meta"):
        create_backbone(config, num_classes)


def _bad_kwargs_message(spec: BackboneSpec, kwargs: dict, err: TypeError) -> str:
    cls = _FAMILY_CLASSES.get(spec.family)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")] if cls else []
    unknown = [k for k in kwargs if k not in valid] if valid else list(kwargs)
    hint = ""
    if unknown and valid:
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"timm_kwargs {kwargs} do not fit {spec.timm_name}: {err}{hint}"
            + (f"; {cls.__name__} accepts: {', '.join(valid)}" if valid else ""))


def resolve_backbone(config: BackboneConfig) -> tuple[BackboneConfig, list[str]]:
    """``config`` with every unset field filled from its checkpoint's card (if it has one), then
    from the backbone's spec; plus a warning for each given value that contradicts the card."""
    from .cache import read_card, resolve_checkpoint

    card = read_card(resolve_checkpoint(config.checkpoint)) if config.checkpoint else {}
    return config.with_defaults(card)
