"""Everything a fine-tuning run needs, as typed configs saved to ``config.yaml``."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import from_dict, to_dict
from ..data.fractions import check_fraction
from ..data.transforms import AUGMENTATIONS
from ..models.backbones import BackboneConfig

OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class DataConfig:
    spec: str = "synthetic-cxr"  # dataset spec (see `medpeft data info`)
    data_root: str | None = None  # folder with the data files; default $MEDPEFT_DATA / the source's
    fraction: float = 1.0  # fraction of training labels, (0, 1]
    fraction_seed: int = 0  # seed of the training subset (fixed, so seeds vary training only)
    skip_bad: bool = False  # leave out missing/corrupt items with a warning instead of stopping
    augment: str = "none"  # training augmentation: none | light | flip

    def __post_init__(self):
        check_fraction(self.fraction)
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")


@dataclass
class TrainConfig:
    epochs: int = 10  # maximum number of epochs
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd
    blr: float | None = None  # base lr; lr = blr * batch_size / 256 (MAE); None = the method's default
    lr: float | None = None  # absolute learning rate; overrides blr when set
    min_lr: float = 1e-6  # floor of the cosine schedule
    warmup_epochs: float = 1.0  # linear warmup length
    weight_decay: float = 0.05  # decoupled weight decay (not on biases, norms, tokens)
    layer_decay: float = 0.75  # ViT layer-wise lr decay (MAE/BEiT); 1.0 disables
    momentum: float = 0.9  # SGD momentum
    clip_grad: float | None = None  # max gradient norm; None = no clipping
    patience: int | None = None  # early stopping: epochs without val improvement; None = off
    seed: int = 0  # seeds model init, data order, dropout and augmentation
    num_workers: int = 0  # DataLoader workers (0 = in process; raise for file datasets on GPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 elsewhere | fp32 | bf16 | fp16
    eval_batch_size: int = 256
    n_bootstrap: int = 1000  # resamples for the test AUROC 95% CI (0 = none)
    keep_checkpoint: bool = False  # keep checkpoint-last.pt after the run completes

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be at least 1 epoch (or None to disable)")

    def learning_rate(self, default_blr: float) -> float:
        """The absolute peak learning rate: ``lr``, else ``blr`` (or the method's) x batch / 256."""
        if self.lr is not None:
            return self.lr
        return (self.blr if self.blr is not None else default_blr) * self.batch_size / 256


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: str = "lora"  # PEFT method name (see `medpeft methods`)
    method_options: dict = field(default_factory=dict)  # the method's config fields, e.g. {rank: 8}
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return from_dict(cls, values, where="run config")
