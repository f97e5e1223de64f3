"""Everything an MAE pretraining run needs, as typed configs saved to ``config.yaml``.

Defaults are the recipe tuned for small ViTs on a CPU (docs/pretraining.md); MAE's own ViT-B/L
recipe (He et al. 2022) is decoder 512 x 8 blocks, 16 heads, blr 1.5e-4, batch 4096,
warmup 40 of 800 epochs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..serialization import from_dict, merge, to_dict
from ..models.backbones import BackboneConfig
from ..runtime.device import check_device_name
from ..runtime.precision import check_precision


@dataclass
class MAEConfig:
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder, in (0, 1)
    decoder_dim: int = 128  # decoder width (MAE: 512); divisible by 4 and by decoder_heads
    decoder_depth: int = 2  # decoder Transformer blocks (MAE: 8)
    decoder_heads: int = 4  # decoder attention heads (MAE: 16)
    norm_pix_loss: bool = True  # regress per-patch normalised pixels (MAE's better target)

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.decoder_depth < 1 or self.decoder_heads < 1:
            raise ValueError("decoder_depth and decoder_heads must be at least 1")
        if self.decoder_dim % 4 or self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} must be divisible by 4 (sin-cos "
                             f"positions) and by decoder_heads {self.decoder_heads}")


OBJECTIVES = ("mae", "simclr")


@dataclass
class SimCLRConfig:
    temperature: float = 0.1  # NT-Xent temperature (SimCLR: 0.1-0.5; lower is sharper)
    projection_dim: int = 128  # output width of the projection MLP (dropped after pretraining)
    hidden_dim: int = 512  # hidden width of the projection MLP

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.projection_dim < 1 or self.hidden_dim < 1:
            raise ValueError("projection_dim and hidden_dim must be at least 1")


@dataclass
class PretrainDataConfig:
    specs: tuple[str, ...] = ("synthetic-cxr",)  # dataset specs; their training images are pooled
    data_root: str | None = None  # folder with the data files; default $MEDPEFT_DATA / the source's
    skip_bad: bool = False  # leave out missing/corrupt items with a warning instead of stopping
    crop_scale: tuple[float, ...] = (0.2, 1.0)  # random-resized-crop area range (MAE: 0.2 1)
    hflip: bool = False  # random horizontal flips (MAE: on; off here: the heart is on the left)
    allow_overlap: bool = False  # the same image (path or pixels) in two splits: a warning instead of an error

    def __post_init__(self):
        if not self.specs:
            raise ValueError("give at least one dataset spec (--data)")
        self.specs = tuple(self.specs)
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        if len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale takes two values 0 < low <= high <= 1, got {self.crop_scale}")


@dataclass
class PretrainTrainConfig:
    epochs: int = 20  # passes over the pooled training images
    batch_size: int = 128
    blr: float = 3e-3  # base lr; lr = blr * batch_size / 256 (MAE's convention)
    lr: float | None = None  # absolute peak learning rate; overrides blr when set
    min_lr: float = 0.0  # floor of the cosine schedule
    warmup_epochs: float = 1.0  # linear warmup length (MAE: 40 of 800 epochs)
    weight_decay: float = 0.05  # AdamW decoupled decay (not on biases, norms, tokens)
    betas: tuple[float, ...] = (0.9, 0.95)  # AdamW betas (MAE's)
    clip_grad: float | None = None  # max gradient norm; None = no clipping
    seed: int = 0  # seeds initialisation, data order, augmentation and masks
    save_at: tuple[int, ...] = ()  # also write checkpoint-<epoch>.pth after these epochs
    val_images: int = 256  # validation images scored each epoch with fixed masks (0 = none)
    figure_images: int = 6  # rows of the reconstruction figure (0 = no figure)
    num_workers: int = 0  # DataLoader workers (0 = in process)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast where it is fast (bf16 GPUs, AMX-BF16 CPUs), else fp32 | fp32 | bf16 | fp16
    keep_checkpoint: bool = False  # keep checkpoint-last.pt (optimizer state) after the run
    probe: str | None = None  # labelled dataset spec for a linear probe of the encoder while it trains (None = off)
    probe_every: int = 5  # probe every this many epochs (and after the last one)
    probe_fraction: float = 1.0  # fraction of the probe's training labels the probe fits on
    probe_patience: int | None = None  # stop when the probe AUROC has not improved for this many probes (None = never)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        self._check_probe()
        check_precision(self.precision)
        check_device_name(self.device)
        for name in ("blr", "lr", "clip_grad"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or unset), got {value}")
        for name in ("min_lr", "warmup_epochs", "weight_decay", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")
        if self.min_lr > self.learning_rate():
            raise ValueError(f"min_lr {self.min_lr:g} is above the peak learning rate {self.learning_rate():.3g}; "
                             "lower --min-lr or raise the learning rate")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas takes two values in [0, 1), got {self.betas}")
        self.betas = tuple(float(b) for b in self.betas)
        self.save_at = tuple(sorted({int(e) for e in self.save_at}))
        if any(e < 1 for e in self.save_at):
            raise ValueError(f"save_at epochs count from 1, got {self.save_at}")
        if self.val_images < 0 or self.figure_images < 0:
            raise ValueError("val_images and figure_images cannot be negative")

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.blr * self.batch_size / 256

    def _check_probe(self) -> None:
        """A probe's spec names a known source, and its settings are in range (before any training)."""
        from ..data import SOURCES, parse_spec

        if self.probe is not None and not str(self.probe).strip():
            self.probe = None
        if self.probe_every < 1:
            raise ValueError(f"probe_every must be at least 1, got {self.probe_every}")
        if self.probe_patience is not None and self.probe_patience < 1:
            raise ValueError(f"probe_patience must be at least 1 (or unset), got {self.probe_patience}")
        self.probe_fraction = float(self.probe_fraction)
        if not 0.0 < self.probe_fraction <= 1.0:
            raise ValueError(f"probe_fraction must be in (0, 1], got {self.probe_fraction}")
        if self.probe is None:
            if self.probe_patience is not None:
                raise ValueError("probe_patience stops on the probe's AUROC; give a labelled dataset with --probe")
            return
        try:
            SOURCES.get(parse_spec(self.probe).scheme)
        except ValueError as err:
            raise ValueError(f"probe {self.probe!r} is not a usable dataset spec: {err}") from None


def _pretraining_backbone() -> BackboneConfig:
    return BackboneConfig("vit_tiny", img_size=64, patch_size=8, drop_path=0.0)


@dataclass
class PretrainConfig:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    backbone: BackboneConfig = field(default_factory=_pretraining_backbone)  # the encoder
    objective: str = "mae"  # mae (masked autoencoder; ViTs) | simclr (contrastive; any backbone, e.g. ResNets)
    mae: MAEConfig = field(default_factory=MAEConfig)
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.backbone.checkpoint is not None:
            raise ValueError("pretraining starts from a random initialisation; --checkpoint "
                             "(continued pretraining) is not supported yet")
        if self.objective == "mae" and self.backbone.name is not None and self.backbone.spec.family != "vit":
            raise ValueError(f"MAE pretraining needs a ViT, not {self.backbone.name}; use --objective simclr "
                             "for CNNs")

    def resolved(self) -> "PretrainConfig":
        """A copy whose backbone has every size and statistic set (from its spec)."""
        return dataclasses.replace(self, backbone=self.backbone.with_defaults()[0])

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PretrainConfig":
        """Missing fields take this class's defaults (a partial ``backbone`` keeps drop_path 0; one
        naming another architecture starts from that architecture's own sizes)."""
        if not isinstance(values, dict):
            raise ValueError(f"pretrain config: expected a mapping of options, got {type(values).__name__}")
        defaults = cls().to_dict()
        backbone = values.get("backbone")
        if isinstance(backbone, dict) and backbone.get("name") not in (None, defaults["backbone"]["name"]):
            # another architecture: the default ViT recipe's sizes (64 px, patch 8) do not carry over
            defaults["backbone"] = to_dict(BackboneConfig(drop_path=0.0))
        return from_dict(cls, merge(defaults, values), where="pretrain config")
