"""TSA: task-specific residual adapters in parallel with a ResNet's 3x3 convolutions.

Li, Liu and Bilen 2022, "Cross-domain Few-shot Learning with Task-specific Adapters" (CVPR);
reference code: github.com/VICO-UoE/URL, ``models/tsa.py`` (``conv_tsa``, ``pa``, ``resnet_tsa``),
whose best setting is residual adapters in matrix form. Benchmarked on medical images by Dutt
et al. 2023 ("Parameter-Efficient Fine-Tuning for Medical Image Analysis: The Missed Opportunity").

Every 3x3 conv directly inside a residual block (ResNet-50: each bottleneck's ``conv2``, 16 in
all) gets a 1x1 conv ``α`` (C_in -> C_out, no bias, the conv's stride) added to its output:
``y = conv3x3(x) + conv1x1_α(x)``. Like the reference code, the stem and the 1x1 convs are left
alone. ResNet-50 has sum(width²) = 1,257,472 adapter weights.

Initialisation: the reference code starts ``α`` at the identity times 1e-4 (``--test.tsa-init eye``).
Here ``α`` starts at zero by default, so the adapted model is exactly the base model at the start;
it still trains from there (its gradient is the outer product of input and output gradient).
``init: eye`` follows the reference code.

Pre-classifier alignment (``β``, from Li et al. 2021, "Universal Representation Learning from
Multiple Domains for Few-shot Classification"): a d x d map of the pooled features, identity at
the start. It is off by default: TSA uses it in front of a nearest-centroid classifier, where it
adds capacity; in front of medpeft's trained linear classifier the product is still one linear
map, at the price of d² weights (4.2M for ResNet-50, 3.3x the adapters).

Merging is exact: with padding = dilation·(k-1)/2 a 1x1 conv with the same stride reads the
pixel that the k x k kernel's centre tap reads, so ``α`` is added to ``weight[:, :, k//2, k//2]``.
``β`` folds into the classifier (``W <- W β``); unmerge restores the classifier weight kept at
merge time, as ``β`` need not be well conditioned enough to invert.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.backbones import head_names
from ._base import MethodConfig, WrapperMethod, register_method

INITS = ("zero", "eye")
EYE_SCALE = 1e-4  # the reference code's scale of the identity start of residual adapters


@dataclass
class TSAConfig(MethodConfig):
    init: str = "zero"  # adapter start: "zero" (exactly the base model) or "eye" (reference code: identity x 1e-4)
    pre_classifier: bool = False  # also learn TSA's d x d pre-classifier alignment (beta, identity start)

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"TSA init must be one of {', '.join(INITS)}, got {self.init!r}")


def check_centre_aligned(conv: nn.Conv2d, where: str) -> None:
    """The 1x1 adapter must read what the kernel's centre tap reads, so that it can be merged."""
    aligned = (conv.groups == 1 and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
               and all(k % 2 == 1 and p == d * (k - 1) // 2
                       for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation)))
    if not aligned:
        raise ValueError(f"TSA needs ungrouped convs with centred zero padding (padding = dilation*(k-1)/2); "
                         f"{where} is {conv}")


class TSAConv2d(nn.Conv2d):
    """A frozen k x k conv plus TSA's parallel 1x1 residual adapter ``tsa_alpha``."""

    def __init__(self, conv: nn.Conv2d, init: str = "zero"):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                         padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias  # shared, keeps their names
        factory = dict(device=conv.weight.device, dtype=conv.weight.dtype)
        alpha = torch.zeros(conv.out_channels, conv.in_channels, 1, 1, **factory)  # (C_out, C_in, 1, 1)
        if init == "eye":
            alpha[:, :, 0, 0] = EYE_SCALE * torch.eye(conv.out_channels, conv.in_channels, **factory)
        self.tsa_alpha = nn.Parameter(alpha)
        self.merged = False
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(x, self.weight, self.bias)  # (B, C_out, H', W')
        if self.merged:
            return y
        return y + F.conv2d(x, self.tsa_alpha, stride=self.stride)

    def _centre(self) -> tuple[slice, slice, int, int]:
        return slice(None), slice(None), self.kernel_size[0] // 2, self.kernel_size[1] // 2

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight[self._centre()] += self.tsa_alpha[:, :, 0, 0]
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight[self._centre()] -= self.tsa_alpha[:, :, 0, 0]
            self.merged = False

    def plain(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, dilation=self.dilation, bias=self.bias is not None, device="meta")
        conv.weight, conv.bias = self.weight, self.bias
        return conv.train(self.training)


class TSAHead(nn.Linear):
    """The classifier with TSA's pre-classifier alignment ``tsa_beta`` (d x d) in front of it."""

    def __init__(self, head: nn.Linear):
        super().__init__(head.in_features, head.out_features, bias=head.bias is not None, device="meta")
        self.weight, self.bias = head.weight, head.bias  # shared, keeps their names
        factory = dict(device=head.weight.device, dtype=head.weight.dtype)
        self.tsa_beta = nn.Parameter(torch.eye(head.in_features, **factory))  # (d, d)
        self.merged = False
        self._weight_before_merge: torch.Tensor | None = None
        self.train(head.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.merged:
            x = F.linear(x, self.tsa_beta)  # (B, d) aligned features
        return F.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._weight_before_merge = self.weight.detach().clone()
            self.weight.copy_(self.weight @ self.tsa_beta)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.copy_(self._weight_before_merge)
            self._weight_before_merge = None
            self.merged = False

    def plain(self) -> nn.Linear:
        head = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        head.weight, head.bias = self.weight, self.bias
        return head.train(self.training)


def block_convs(model: nn.Module) -> list[tuple[nn.Module, str, nn.Conv2d]]:
    """(block, attribute, conv) of every 3x3 conv directly inside a residual block of a timm ResNet."""
    found = []
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            for attr, child in block.named_children():
                if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3):
                    found.append((block, attr, child))
    return found


@register_method
class TSA(WrapperMethod):
    name = "tsa"
    config_class = TSAConfig
    families = ("resnet",)
    layer_types = (TSAConv2d, TSAHead)
    summary = "TSA: 1x1 residual adapters in parallel with each residual block's 3x3 conv"
    paper = "Li, Liu and Bilen 2022, Cross-domain Few-shot Learning with Task-specific Adapters (CVPR)"

    def inject(self, model: nn.Module) -> nn.Module:
        convs = block_convs(model)
        if any(isinstance(conv, TSAConv2d) for _, _, conv in convs):
            raise ValueError("TSA is already applied to this model")
        for index, (block, attr, conv) in enumerate(convs):
            check_centre_aligned(conv, f"3x3 conv #{index} ({attr})")
            setattr(block, attr, TSAConv2d(conv, self.config.init))
        if self.config.pre_classifier:
            head = head_names(model)[0]
            if not isinstance(getattr(model, head, None), nn.Linear):
                raise ValueError(f"TSA pre_classifier needs a linear classifier at model.{head}")
            setattr(model, head, TSAHead(getattr(model, head)))
        return model

    def trainable_patterns(self, model: nn.Module) -> list[str]:
        return [r"\.tsa_(alpha|beta)$"]

    def unload(self, model: nn.Module) -> nn.Module:
        self.merge(model)
        for parent in list(model.modules()):
            for attr, child in list(parent.named_children()):
                if isinstance(child, (TSAConv2d, TSAHead)):
                    setattr(parent, attr, child.plain())
        return model
