"""MAE pretraining: foundation models made from unlabeled medical images, no downloads.

    from medpeft.pretrain import PretrainConfig, pretrain, ensure_pretrained
    summary = pretrain(PretrainConfig(), "runs/pretrain/demo", name="my-mae")
    path = ensure_pretrained("my-mae", PretrainConfig())  # cached: made once per config

Checkpoints are MAE's layout, so ``medpeft finetune --checkpoint <file or name>`` loads them.
"""
from .config import MAEConfig, PretrainConfig, PretrainDataConfig, PretrainTrainConfig
from .ensure import ensure_pretrained
from .pretraining import pretrain
from .mae import MaskedAutoencoderViT, build_mae, random_masking

__all__ = ["MAEConfig", "PretrainConfig", "PretrainDataConfig", "PretrainTrainConfig",
           "ensure_pretrained", "pretrain", "MaskedAutoencoderViT", "build_mae", "random_masking"]
