"""Closed-form trainable counts of the peft-backed and ResNet-only methods (see conftest.py).

Written from each method's definition and the architecture's layer shapes (ViT: ``dims``; ResNet:
the widths of its bottlenecks), never by counting the adapted model.
"""
from math import isqrt

from .shapes import dims, total_params  # noqa: F401  (formulas use them)


# --- ViT: per-module formulas over the (in, out) features of one block's Linear layers ----------

def _vit_linears(model) -> dict:
    """(in_features, out_features) of each Linear of a timm ViT block, by its name."""
    k = dims(model)
    d, hidden = k["d"], k["mlp"]
    return {"qkv": (d, 3 * d), "proj": (d, d), "fc1": (d, hidden), "fc2": (hidden, d)}


def _per_block(per_module):
    """Formula: L blocks x the sum over target modules of ``per_module(in, out, name, cfg)``, plus the head."""
    def formula(model, cfg):
        k, shapes = dims(model), _vit_linears(model)
        names = [t.rpartition(".")[2] for t in cfg.target_modules]  # "attn.proj" -> "proj"
        return k["L"] * sum(per_module(*shapes[n], n, cfg) for n in names) + k["head"]
    return formula


def _lora(n_in, n_out, name, cfg):
    return cfg.rank * (n_in + n_out)  # A: (r, in), B: (out, r)


def _dora(n_in, n_out, name, cfg):
    return _lora(n_in, n_out, name, cfg) + n_out  # + one magnitude per output row


def _ia3(n_in, n_out, name, cfg):
    feedforward = {f.rpartition(".")[2] for f in cfg.feedforward_modules}
    return n_in if name in feedforward else n_out  # one scale per input / output feature


def _loha(n_in, n_out, name, cfg):
    return 2 * cfg.rank * (n_in + n_out)  # (W1a W1b) * (W2a W2b), each (out, r) @ (r, in)


def _near_square(n, factor):
    """LoKr's split n = m * k: ``factor`` x n/factor if it divides n, else the divisor pair nearest sqrt(n)."""
    if factor > 0 and n % factor == 0:
        return factor, n // factor
    m = max(q for q in range(1, isqrt(n) + 1) if n % q == 0 and (factor <= 0 or q <= factor))
    return m, n // m


def _lokr(n_in, n_out, name, cfg):
    """W1 (a x c) kron W2 (b x d) with out = a*b, in = c*d; a factor is low-rank when r < its larger side / 2."""
    a, b = _near_square(n_out, cfg.decompose_factor)
    c, d = _near_square(n_in, cfg.decompose_factor)
    w1 = cfg.rank * (a + c) if cfg.decompose_both and cfg.rank < max(a, c) / 2 else a * c
    w2 = cfg.rank * (b + d) if cfg.rank < max(b, d) / 2 else b * d
    return w1 + w2


# --- ResNet: from the bottleneck widths -----------------------------------------------------------

def _bottlenecks(model):
    return [block for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]


def _film(model, cfg):
    """A scale and a shift per channel of every BatchNorm: stem, bn1-bn3 of each block, each downsample."""
    channels = model.bn1.num_features
    for block in _bottlenecks(model):
        width, out = block.conv2.out_channels, block.conv3.out_channels  # out = 4 * width
        channels += width + width + out + (out if block.downsample is not None else 0)
    return 2 * channels + dims(model)["head"]


def _tsa(model, cfg):
    """A C_in x C_out 1x1 conv per bottleneck 3x3 conv (width x width), + d x d before the classifier."""
    adapters = sum(b.conv2.in_channels * b.conv2.out_channels for b in _bottlenecks(model))
    beta = model.num_features ** 2 if cfg.pre_classifier else 0
    return adapters + beta + dims(model)["head"]


def _lora_conv(model, cfg):
    """Per targeted conv: A = conv(C_in/groups -> r, k x k), B = 1x1 conv(r -> C_out)."""
    total = 0
    for name, conv in model.named_modules():
        if any(name == t or name.endswith("." + t) for t in cfg.target_modules):
            kh, kw = conv.kernel_size
            total += cfg.rank * (conv.in_channels // conv.groups * kh * kw + conv.out_channels)
    return total + dims(model)["head"]


# name -> formula(base model before injection, method config) -> trainable parameter count
FORMULAS: dict = {
    "lora-qkv": _per_block(_lora),
    "dora": _per_block(_dora),
    "ia3": _per_block(_ia3),
    "loha": _per_block(_loha),
    "lokr": _per_block(_lokr),
    "lora-conv": _lora_conv,
    "film": _film,
    "tsa": _tsa,
}
