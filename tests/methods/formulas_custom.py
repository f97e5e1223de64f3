"""Closed-form trainable counts of the methods written in medpeft (see conftest.py).

Per ViT block: qkv (3d² + 3d), attention projection (d² + d), fc1 (d·mlp + mlp), fc2 (mlp·d + d),
norm1 and norm2 (2d each). Every formula adds the head (classifier + fc_norm for ViTs).
"""
import torch.nn as nn

from .shapes import dims, total_params  # noqa: F401  (formulas use them)


def _resnet_batchnorm_channels(model) -> int:
    """Σ BatchNorm widths of a bottleneck ResNet (ResNet-50 family): the stem's 64, then per block
    bn1, bn2 (w) and bn3 (4w), plus one downsample BN (4w) per stage, with w = 64·2^stage."""
    total = 64
    for stage in range(4):
        w, blocks = 64 * 2 ** stage, len(getattr(model, f"layer{stage + 1}"))
        total += blocks * (w + w + 4 * w) + 4 * w
    return total


def _bitfit(model, cfg):
    k = dims(model)
    if "d" not in k:  # ResNet: BatchNorm weight and bias
        return 2 * _resnet_batchnorm_channels(model) + k["head"]
    # patch-embedding bias + per block: norm1, qkv (3d), proj, norm2, fc1 (mlp), fc2 biases
    return k["d"] + k["L"] * (7 * k["d"] + k["mlp"]) + k["head"]


def _ssf(model, cfg):
    k = dims(model)
    if "d" not in k:  # ResNet: a scale and a shift per channel of every BatchNorm
        return 2 * _resnet_batchnorm_channels(model) + k["head"]
    # scale + shift after the patch embedding and, per block, norm1, qkv, proj, norm2, fc1, fc2
    return 2 * (k["d"] + k["L"] * (7 * k["d"] + k["mlp"])) + k["head"]


def _attn(model, cfg):
    k = dims(model)
    return k["L"] * (4 * k["d"] ** 2 + 4 * k["d"]) + k["head"]


def _layernorm(model, cfg):
    k = dims(model)
    # norm1 and norm2 of every block (weight + bias, 2d each); medpeft's avg-pool ViTs replace the
    # final `norm` by Identity and use fc_norm instead, which the head term already counts
    final_norm = 0 if isinstance(model.norm, nn.Identity) else 2 * k["d"]
    return k["L"] * 2 * (2 * k["d"]) + final_norm + k["head"]


def _partial(model, cfg):
    k = dims(model)
    d, m = k["d"], k["mlp"]
    block = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d  # attention, MLP, two norms
    return cfg.k * block + k["head"]  # timm's avg-pool ViT has no final norm (fc_norm is head)


def _bottleneck(d, cfg):
    return 2 * d * cfg.bottleneck + cfg.bottleneck + d  # down (d·m + m) + up (m·d + d)


def _adapter(model, cfg):
    k = dims(model)
    return k["L"] * (int(cfg.after_attn) + int(cfg.after_mlp)) * _bottleneck(k["d"], cfg) + k["head"]


def _parallel_adapter(model, cfg):
    k = dims(model)
    return k["L"] * (_bottleneck(k["d"], cfg) + int(cfg.learnable_scale)) + k["head"]


# name -> formula(base model before injection, method config) -> trainable parameter count
FORMULAS: dict = {
    "bitfit": _bitfit,
    "attn": _attn,
    "partial-k": _partial,
    "ln": _layernorm,
    "ssf": _ssf,
    "vpt-shallow": lambda model, cfg: cfg.num_tokens * dims(model)["d"] + dims(model)["head"],
    "vpt-deep": lambda model, cfg: dims(model)["L"] * cfg.num_tokens * dims(model)["d"] + dims(model)["head"],
    "adapter": _adapter,
    "adapter-parallel": _parallel_adapter,
    "adaptformer": _parallel_adapter,
}
