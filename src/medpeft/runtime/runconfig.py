"""Everything a fine-tuning run needs, as typed configs saved to its ``config.yaml``.

``RunConfig`` is the schema of a classifier run directory, shared by training (which writes
it), evaluation and serving (which rebuild the model from it) and studies (which make many).
The method's options are its own typed config: ``RunConfig(method="lora",
method_options={"rank": 0})`` fails when the config is built, before anything touches disk or
data, naming the method and the valid options.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..serialization import from_dict, to_dict
from ..data.fractions import check_fraction, check_min_per_class, resolve_val_fraction
from ..data.transforms import AUGMENTATIONS
from ..methods import METHODS, Method, MethodConfig
from ..models.backbones import BackboneConfig
from .device import check_device_name
from .featurecache import check_feature_cache
from .precision import check_precision
from .schedule import SCHEDULES

OPTIMIZERS = ("adamw", "adam", "sgd")
AUTO_VALIDATIONS = 50  # val_every=None: runs of more epochs than this validate about this many times


@dataclass
class DataConfig:
    spec: str = "synthetic-cxr"  # dataset spec (see `medpeft data info`)
    data_root: str | None = None  # folder with the data files; default $MEDPEFT_DATA / the source's
    fraction: float = 1.0  # fraction of training labels, (0, 1]
    fraction_seed: int = 0  # seed of the training subset (fixed, so seeds vary training only)
    skip_bad: bool = False  # leave out missing/corrupt items with a warning instead of stopping
    augment: str = "none"  # training augmentation: none | light | flip
    val_fraction: str | float | None = None  # validation sized to the budget: unset = all; (0, 1]; match = fraction (nested, by fraction_seed)
    val_min_per_class: int = 5  # val_fraction floor: this many of each class (multi-label: positives per finding), or all
    allow_overlap: bool = False  # the same image (path or pixels) in two splits: a warning instead of an error

    def __post_init__(self):
        check_fraction(self.fraction)
        if isinstance(self.val_fraction, str) and self.val_fraction.strip().lower() == "match":
            self.val_fraction = "match"
        elif self.val_fraction is not None:
            self.val_fraction = resolve_val_fraction(self.val_fraction, self.fraction)  # "0.1" -> 0.1
        check_min_per_class(self.val_min_per_class)
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")

    @property
    def validation_fraction(self) -> float | None:
        """The fraction of the validation split kept: None (all of it), ``val_fraction``, or for
        ``match`` the training ``fraction``."""
        return resolve_val_fraction(self.val_fraction, self.fraction)


@dataclass
class TrainConfig:
    epochs: int = 10  # maximum number of epochs (unless steps is set; min_steps may raise it)
    steps: int | None = None  # run length in optimiser steps; overrides epochs (the last epoch may be partial)
    min_steps: int | None = None  # raise epochs until the run takes at least this many optimiser steps
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | adam (weight decay as L2, MedMNIST's recipe) | sgd
    blr: float | None = None  # base lr; lr = blr * batch_size / 256 (MAE); None = the method's default
    lr: float | None = None  # absolute learning rate; overrides blr when set
    min_lr: float = 1e-6  # floor of the cosine schedule (at most the peak lr)
    warmup_epochs: float = 1.0  # linear warmup length, in epochs
    schedule: str = "cosine"  # after warmup: cosine (to min_lr; MAE) | step (lr x gamma at each milestone; MedMNIST)
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: where lr drops, as fractions of the run
    gamma: float = 0.1  # step schedule: lr factor at each milestone
    weight_decay: float = 0.05  # decoupled weight decay (not on biases, norms, tokens)
    layer_decay: float = 0.75  # ViT layer-wise lr decay (MAE/BEiT); 1.0 disables
    momentum: float = 0.9  # SGD momentum
    clip_grad: float | None = None  # max gradient norm (> 0); None = no clipping
    mixup: float = 0.0  # mixup's Beta(a, a) on training batches; 0 = off (MAE fine-tuning: 0.8)
    cutmix: float = 0.0  # cutmix's Beta(a, a); 0 = off (MAE fine-tuning: 1.0); with mixup, one of the two per batch
    patience: int | None = None  # early stopping: validations without val improvement (see val_every), never before min_steps; None = off
    val_every: int | None = None  # validate every N epochs and after the last; None: each epoch (over 50 epochs: ~50 times)
    seed: int = 0  # seeds model init, data order, dropout and augmentation
    num_workers: int = 0  # DataLoader workers (0 = in process; raise for file datasets on GPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto: bf16 autocast where it is fast (bf16 GPUs, AMX-BF16 CPUs), else fp32 | fp32 | bf16 | fp16
    feature_cache: str = "auto"  # frozen leading ViT blocks run once (eval mode), not every epoch: auto | on | off
    eval_batch_size: int = 256
    n_bootstrap: int = 1000  # resamples for the test AUROC 95% CI (0 = none)
    keep_checkpoint: bool = False  # keep checkpoint-last.pt after the run completes

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("steps", "min_steps", "val_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), got {value}")
        if self.steps is not None and self.min_steps is not None:
            raise ValueError(f"steps ({self.steps}, an exact run length) and min_steps ({self.min_steps}, a floor "
                             "on the epochs) cannot both be set; keep one of --steps and --min-steps")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        self.milestones = tuple(float(m) for m in self.milestones)
        if not all(0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones are increasing fractions of the run in (0, 1), got {list(self.milestones)}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        check_precision(self.precision)
        check_feature_cache(self.feature_cache)
        check_device_name(self.device)
        for name in ("blr", "lr", "clip_grad"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive (or unset), got {value}")
        for name in ("min_lr", "warmup_epochs", "weight_decay", "momentum", "num_workers", "n_bootstrap", "mixup",
                     "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 validation (or None to disable), got {self.patience}")

    def validation_interval(self, epochs: int) -> int:
        """Epochs between validations in a run of ``epochs`` planned epochs: ``val_every``, or
        1 up to AUTO_VALIDATIONS epochs and ceil(epochs / AUTO_VALIDATIONS) beyond, so a 1% subset
        trained for 500 one-step epochs is validated 50 times, not 500. (The last epoch is always
        validated, and ``patience`` counts validations.)"""
        if self.val_every is not None:
            return self.val_every
        return max(1, math.ceil(epochs / AUTO_VALIDATIONS))

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
    method_options: MethodConfig | None = None  # the method's own options (`medpeft methods NAME`); None: its defaults
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        cls = self.method_class  # an unknown name fails here, with the valid names
        options = self.method_options
        if options is None:
            options = cls.config_class()
        elif isinstance(options, dict):
            options = from_dict(cls.config_class, options, where=f"method {self.method}")
        elif not isinstance(options, cls.config_class):
            raise ValueError(f"method {self.method} takes a {cls.config_class.__name__}, "
                             f"got {type(options).__name__}")
        self.method_options = options
        peak = self.learning_rate
        if self.train.min_lr > peak:
            raise ValueError(f"min_lr {self.train.min_lr:g} is above the peak learning rate {peak:.3g} "
                             f"({'lr' if self.train.lr is not None else 'blr x batch_size / 256'}); "
                             "lower --min-lr or raise the learning rate")

    @property
    def method_class(self) -> type[Method]:
        return METHODS.get(self.method)

    def create_method(self) -> Method:
        return self.method_class(self.method_options)

    @property
    def learning_rate(self) -> float:
        return self.train.learning_rate(self.method_class.default_blr)

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        where = "run config"
        if not isinstance(values, dict):
            raise ValueError(f"{where}: expected a mapping of options, got {type(values).__name__}")
        values = dict(values)
        options = values.pop("method_options", None)
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"{where}.method_options: expected a mapping such as {{rank: 8}}, got {options!r}")
        config = from_dict(cls, values, where=where)
        if options:
            config.method_options = from_dict(config.method_class.config_class, options,
                                              where=f"method {config.method}")
        return config
